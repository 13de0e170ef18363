"""The viewer's JacobiNeRF panel: :mod:`.panel` (GUI elements and callbacks), :mod:`.session` (interaction state in
plain Python, one part per job: :mod:`.selection`, :mod:`.labels`, :mod:`.suggestions`, with :mod:`.settings`,
:mod:`.click_evaluation` and :mod:`.click_files`), :mod:`.decoration` (what a frame shows, a pure function),
:mod:`.export` (masks and PLY)."""
