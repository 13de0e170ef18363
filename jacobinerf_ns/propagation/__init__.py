"""Label propagation: renders of a model with a probe (:mod:`.rendering`), the paper's protocol types and click logic
(:mod:`.protocol`), and one module per method — :mod:`.jacobian` (JacobiNeRF), :mod:`.semantic_head`
(Semantic-NeRF style) and :mod:`.dino` (DINO-2D, DINO-NeRF style) — each importing only the protocol.

``from jacobinerf_ns.propagation import propagate`` is the entry point from Python.
"""

from jacobinerf_ns.probe import RESPONSES, Probe
from jacobinerf_ns.propagation.rendering import pixel_jacobians, propagate, render_responses

__all__ = ["RESPONSES", "Probe", "pixel_jacobians", "propagate", "render_responses"]
