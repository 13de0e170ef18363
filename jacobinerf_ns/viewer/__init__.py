"""The viewer's JacobiNeRF panel: :mod:`.panel` (GUI elements and callbacks), :mod:`.session` (interaction state in
plain Python), :mod:`.decoration` (what a frame shows, a pure function), :mod:`.export` (masks and PLY)."""
