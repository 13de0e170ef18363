"""Test helpers: a tiny JacobiNeRF model (CPU, seconds) and random rays."""

from __future__ import annotations

import torch

TRAINED_STEPS, TRAINED_SHAPING_START = 800, 400  # the demo's recipe (the `trained_run` fixture)


def tiny_model_config(**overrides):
    from jacobinerf_ns.model import JacobiNerfModelConfig

    settings = dict(
        implementation="torch",
        num_levels=4,
        log2_hashmap_size=10,
        max_res=64,
        hidden_dim=16,
        hidden_dim_color=16,
        head_in_dim=8,
        appearance_embed_dim=4,
        num_nerf_samples_per_ray=8,
        num_proposal_samples_per_ray=(16, 8),
        proposal_net_args_list=[
            {"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 3, "max_res": 32, "use_linear": False},
            {"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 3, "max_res": 32, "use_linear": False},
        ],
        eval_num_rays_per_chunk=256,
    )
    settings.update(overrides)
    return JacobiNerfModelConfig(**settings)


def build_tiny_model(seed: int = 0, **overrides):
    from nerfstudio.data.scene_box import SceneBox

    torch.manual_seed(seed)
    config = tiny_model_config(**overrides)
    return config.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata={}
    )


def random_ray_bundle(count: int, seed: int = 0, dtype=torch.float32):
    from nerfstudio.cameras.rays import RayBundle

    generator = torch.Generator().manual_seed(seed)
    origins = (torch.rand(count, 3, generator=generator) - 0.5) * 0.5
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    return RayBundle(
        origins=origins.to(dtype),
        directions=directions.to(dtype),
        pixel_area=torch.full((count, 1), 1e-4, dtype=dtype),
        camera_indices=torch.randint(0, 4, (count, 1), generator=generator),
        nears=torch.full((count, 1), 0.05, dtype=dtype),
        fars=torch.full((count, 1), 2.0, dtype=dtype),
    )
