"""JacobiNeRF for nerfstudio: NeRFs whose RGB-head Jacobians are shaped with a mutual-information loss.

Importing this package is cheap: nerfstudio discovers the method through `jacobinerf_ns.config`,
which defers every heavy import until a pipeline is actually built.
"""

__version__ = "0.1.0"
