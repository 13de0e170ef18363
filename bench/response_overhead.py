"""Overhead of perturbation responses on top of a plain render, measured in one run (ratios).

    python bench/response_overhead.py [--load-config outputs/.../config.yml] [--clicks 20] [--repeats 3]

Prints, for one eval view: the plain eval render; the same render with K-click responses (linear and exact,
2D + 3D together) — the propagation cost (target ≤ 1.5×); and the viewer panel's frame with a selection and
with painted labels (target ≤ 1.3×). Without ``--load-config`` it builds an untrained jacobinerf on the embedded
sample scene (timings do not depend on training).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch


def load_pipeline(config_path, device: str):
    if config_path is not None:
        from nerfstudio.utils.eval_utils import eval_setup

        return eval_setup(config_path, test_mode="test")[1]
    from jacobinerf_ns.runs import method_config
    from jacobinerf_ns.sample_scene import make_sample_scene

    config = method_config()
    config.machine.device_type = device
    config.pipeline.datamanager.data = make_sample_scene(
        Path(tempfile.gettempdir()) / "jacobinerf_bench_scene", width=160, height=120
    )
    config.pipeline.model.shaping_start_step = -1
    return config.pipeline.setup(device=device, test_mode="test")


def median_seconds(function, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from jacobinerf_ns.propagation import Probe, pixel_jacobians
    from jacobinerf_ns.viewer.session import ViewerSession

    pipeline = load_pipeline(args.load_config, args.device)
    model = pipeline.model
    model.eval()
    cameras = pipeline.datamanager.eval_dataset.cameras
    camera = cameras[0:1].to(model.device)
    height, width = int(camera.height), int(camera.width)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.stack(
        [
            torch.randint(height, (args.clicks,), generator=generator),
            torch.randint(width, (args.clicks,), generator=generator),
        ],
        dim=-1,
    )
    sources = pixel_jacobians(model, camera, pixels)

    def plain():
        return model.get_outputs_for_camera(camera)

    def with_probe(mode: str):
        def render():
            with model.probing(Probe(sources, mode=mode)):
                return model.get_outputs_for_camera(camera)

        return render

    session = ViewerSession(model)  # what the viewer panel drives
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)

    def click(y: int, x: int):
        return rays[y : y + 1, x]

    plain()  # warm-up
    results = {"plain render": median_seconds(plain, args.repeats, args.device)}
    results[f"+ {args.clicks} clicks, linear"] = median_seconds(with_probe("linear"), args.repeats, args.device)
    results[f"+ {args.clicks} clicks, exact"] = median_seconds(with_probe("exact"), args.repeats, args.device)
    session.selection.select(click(height // 2, width // 2))
    results["viewer: selection"] = median_seconds(plain, args.repeats, args.device)
    for index in range(3):
        session.labels.add(click((index + 1) * height // 4, (index + 1) * width // 4), f"label{index}")
    results["viewer: selection + 3 labels"] = median_seconds(plain, args.repeats, args.device)

    machine = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    print(f"machine: {machine}; view {width}x{height}; {args.repeats} repeats (median)")
    base = results["plain render"]
    for name, seconds in results.items():
        target = " (target <= 1.5x)" if "clicks" in name else " (target <= 1.3x)" if "viewer" in name else ""
        print(f"  {name:32s} {seconds * 1e3:9.1f} ms   {seconds / base:5.2f}x{target}")


if __name__ == "__main__":
    main()
