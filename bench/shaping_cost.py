"""Cost of MI shaping, measured in one run (ratios; the machine is named in the output).

    python bench/shaping_cost.py [--data DIR] [--device cpu|cuda] [--steps N] [--rays R]

Prints (1) the time of a training step in the shaping phase vs the photometric phase (target ≤ 1.5×), measured in
alternating blocks through nerfstudio's ``Trainer.train_iteration``; (2) closed-form Jacobians vs the original's
per-ray ``autograd.grad(create_graph=True)`` for a 64-ray batch after one forward pass, alone (target ≥ 100×)
and with the backward of the MI loss; (3) peak memory of each phase (CUDA: max allocated; CPU: peak RSS growth).
Without ``--data`` it uses the embedded sample scene with the masks surrogate.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def peak_memory_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_trainer(data: Path, device: str, rays: int, extra_model: dict):
    from jacobinerf_ns.runs import method_config

    config = method_config()
    config.machine.device_type = device
    config.mixed_precision = device.startswith("cuda")
    config.vis = "tensorboard"
    config.output_dir = Path(tempfile.mkdtemp())
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    config.pipeline.datamanager.surrogate = "masks"
    config.pipeline.model.shaping_start_step = 0
    for key, value in extra_model.items():
        setattr(config.pipeline.model, key, value)
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def time_block(trainer, shaping: bool, steps: int, first_step: int, device: str) -> float:
    trainer.pipeline.model.shaping_active = shaping
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(first_step, first_step + steps):
        trainer.train_iteration(step)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def jacobian_methods(trainer, device: str, repeats: int):
    """Median seconds ``(J only, J + MI-loss backward)`` for a 64-ray batch after one (untimed) forward pass:
    the closed form vs the original's one ``autograd.grad(create_graph=True)`` per ray."""
    from jacobinerf_ns import jacobians
    from jacobinerf_ns.shaping import mi_shaping_losses
    from jacobinerf_ns.surrogates import affinity

    model = trainer.pipeline.model
    model.shaping_active = False
    ray_bundle, batch = trainer.pipeline.datamanager.next_train(0)
    bundle = ray_bundle[:64].to(model.device)
    weight = model.field.rgb_head.weight
    positives = affinity(batch["surrogate"][:64].to(model.device))

    def closed_form(outputs, head):
        return jacobians.flatten(jacobians.ray_jacobian(head.weights, head.rgb, head.features))

    def autograd_per_ray(outputs, head):
        gray = outputs["rgb"].mean(dim=-1)
        return torch.stack(
            [
                torch.autograd.grad(gray[i], weight, create_graph=True, retain_graph=True)[0].flatten()
                for i in range(len(gray))
            ]
        )

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    timings = {}
    for name, method in (("closed_form", closed_form), ("autograd", autograd_per_ray)):
        jacobian_only, with_backward = [], []
        for _ in range(repeats):
            outputs, head = model.get_outputs_with_head_inputs(bundle)
            sync()
            start = time.perf_counter()
            jac = method(outputs, head)
            sync()
            middle = time.perf_counter()
            mi_shaping_losses(jac, positives, 0.8).mi.backward()
            sync()
            jacobian_only.append(middle - start)
            with_backward.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        timings[name] = (sorted(jacobian_only)[repeats // 2], sorted(with_backward)[repeats // 2])
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10, help="steps per timing block")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per phase")
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--small-field", action="store_true", help="the demo's small field (CPU-friendly)")
    args = parser.parse_args()

    data = args.data
    if data is None:
        from jacobinerf_ns.sample_scene import make_sample_scene

        data = make_sample_scene(Path(tempfile.gettempdir()) / "jacobinerf_bench_scene")
    extra = (
        dict(
            log2_hashmap_size=15,
            num_levels=8,
            max_res=256,
            num_nerf_samples_per_ray=32,
            num_proposal_samples_per_ray=(64, 32),
        )
        if args.small_field
        else {}
    )
    trainer = build_trainer(data, args.device, args.rays, extra)
    trainer.pipeline.datamanager.prepare_surrogate()

    time_block(trainer, False, 3, 0, args.device)  # warm-up
    photometric_peak = peak_memory_mib(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    photometric, shaping = [], []
    step = 3
    for _ in range(args.blocks):
        photometric.append(time_block(trainer, False, args.steps, step, args.device))
        step += args.steps
        if args.device.startswith("cuda"):
            photometric_peak = max(photometric_peak, peak_memory_mib(args.device))
            torch.cuda.reset_peak_memory_stats()
        shaping.append(time_block(trainer, True, args.steps, step, args.device))
        step += args.steps
    shaping_peak = peak_memory_mib(args.device)
    jacobian_timings = jacobian_methods(trainer, args.device, repeats=5)

    photometric_s, shaping_s = sorted(photometric)[len(photometric) // 2], sorted(shaping)[len(shaping) // 2]
    closed_jac, closed_total = jacobian_timings["closed_form"]
    autograd_jac, autograd_total = jacobian_timings["autograd"]
    print(
        f"machine: {machine(args.device)}; data: {data}; {args.rays} rays/step; "
        f"contrastive batch {trainer.pipeline.model.config.contrastive_batch_size}"
    )
    print(
        f"(1) step time   photometric {photometric_s * 1e3:8.1f} ms   shaping {shaping_s * 1e3:8.1f} ms   "
        f"ratio {shaping_s / photometric_s:.2f}x (target <= 1.5x)"
    )
    print(
        f"(2) 64-ray J    closed form {closed_jac * 1e3:8.2f} ms   per-ray autograd {autograd_jac * 1e3:8.2f} ms   "
        f"speed-up {autograd_jac / closed_jac:.0f}x (target >= 100x)"
    )
    print(
        f"    J + MI-loss backward: closed form {closed_total * 1e3:8.2f} ms   autograd {autograd_total * 1e3:8.2f} ms"
        f"   speed-up {autograd_total / closed_total:.0f}x"
    )
    label = "max allocated" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"(3) memory ({label})   photometric phase {photometric_peak:8.0f} MiB   shaping phase {shaping_peak:8.0f} MiB"
    )


if __name__ == "__main__":
    main()
