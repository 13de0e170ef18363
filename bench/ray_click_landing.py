"""Where the label test's ray clicks land: its runs retrained with extra ``ns-train`` options, per machine seed.

    python bench/ray_click_landing.py --out OUT [--seeds 42 1] [--normalisation other|default] \
        [--train-option OPTION VALUE ...]

Trains ``tests/test_label_command.py``'s recipe (the tests' field, ``TRAINED_STEPS`` steps shaped with the scene's
instance masks; under ``other``, the sample scene without labels and the half-scale normalisation of its ``runs``
fixture) once per seed, with each ``--train-option`` added, and prints, per object, how far its ray click (the test's
``aimed_ray``) lands from the ray's analytic hit, in the scene's original units — what
``test_a_ray_click_in_original_coordinates_lands_on_its_object`` checks against 0.1. Runs already in ``OUT`` are
reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' recipe and their aimed rays

from tests.helpers import TRAINED_SHAPING_START, TRAINED_STEPS  # noqa: E402
from tests.test_label_command import (  # noqa: E402
    OBJECTS,
    OTHER_NORMALISATION,
    aimed_ray,
    fingerprint_of,
    landing_distances,
    run_options,
    transforms,
    without_labels,
)


def landing(run: Path, scene: Path) -> dict:
    """Object → how far its ray click, aimed as the test aims it at ``scene``, lands in ``run`` (original units)."""
    from nerfstudio.utils.eval_utils import eval_setup

    from jacobinerf_ns.clicks import ClickSet, RayClick

    _, pipeline, _, _ = eval_setup(run / "config.yml", test_mode="test")
    meta = transforms(scene)
    aimed = {name: aimed_ray(meta, name, target) for name, target in OBJECTS.items()}
    clicks = tuple(RayClick(name, tuple(o.tolist()), tuple(d.tolist())) for name, (o, d, _) in aimed.items())
    truth = np.array([hit for _, _, hit in aimed.values()])
    return landing_distances(pipeline, ClickSet(tuple(aimed), clicks, fingerprint_of(scene)), truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/ray_click_landing"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1], help="machine seeds of the runs")
    parser.add_argument("--normalisation", default="other", choices=["other", "default"])
    parser.add_argument("--train-option", nargs=2, action="append", default=[], metavar=("OPTION", "VALUE"),
                        help="an ns-train option (without its leading --) added to every run")  # fmt: skip
    args = parser.parse_args()

    from jacobinerf_ns.runs import train
    from jacobinerf_ns.sample_scene import make_sample_scene

    sample = args.out / "sample_scene"
    if not (sample / "transforms.json").is_file():
        make_sample_scene(sample)
    scene = sample
    if args.normalisation == "other":
        scene = args.out / "unlabelled_scene"
        if not (scene / "transforms.json").is_file():
            without_labels(sample, scene)
    extra = [part for option, value in args.train_option for part in (f"--{option}", value)]
    print(f"ray clicks' landing distance (original units), {args.normalisation} normalisation, {' '.join(extra)}")
    print("| seed | " + " | ".join(OBJECTS) + " |\n|---|" + "---|" * len(OBJECTS))
    for seed in args.seeds:
        name = f"seed_{seed}"
        run = args.out / "runs" / "u" / "jacobinerf" / name
        if not sorted((run / "nerfstudio_models").glob("step-*.ckpt")):
            options = run_options(sample / "instances", seed, *extra)
            if args.normalisation == "other":
                options += OTHER_NORMALISATION
            run = train(scene, args.out / "runs", TRAINED_STEPS, TRAINED_SHAPING_START, "cpu", options, "u", name)
        distances = landing(run, scene)
        print(f"| {seed} | " + " | ".join(f"{distances[name]:.3f}" for name in OBJECTS) + " |", flush=True)


if __name__ == "__main__":
    main()
