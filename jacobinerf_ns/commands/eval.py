"""``jacobinerf-eval``: ``ns-eval`` with the label-propagation protocol chosen at evaluation time.

    jacobinerf-eval --load-config outputs/.../config.yml --output-path eval.json \\
        [--propagation.method jacobian|semantic-head|dino-2d|dino-field] [--propagation.settings sparse dense] ...

``ns-eval`` reads the protocol saved at training (``--pipeline.propagation.*``); this command replaces it, so one
trained run is evaluated with every method on the same clicks (the baselines of the paper's Tables 1–2).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import tyro
from nerfstudio.scripts.eval import ComputePSNR

from jacobinerf_ns import errors, files
from jacobinerf_ns.errors import require
from jacobinerf_ns.propagation.protocol import PropagationProtocol


@dataclass
class JacobiNerfEval(ComputePSNR):
    """Load a jacobinerf run, compute its label-propagation (and photometric) metrics, save them to a JSON file."""

    propagation: PropagationProtocol = field(default_factory=PropagationProtocol)
    """The protocol and method used instead of the run's saved one."""
    photometric: bool = True
    """Also compute ns-eval's PSNR/SSIM of the eval views (off: propagation metrics only)."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        from jacobinerf_ns.pipeline import DINO_METHODS
        from jacobinerf_ns.runs import open_run

        require(self.output_path.suffix == ".json", "--output-path", f"must be a .json file, got {self.output_path}.")
        config, pipeline, checkpoint_path = open_run(self.load_config)
        self.propagation.validate(len(pipeline.datamanager.train_dataparser_outputs.cameras), "--propagation.")
        pipeline.config.propagation = self.propagation
        if self.propagation.method in DINO_METHODS:
            pipeline.dino_features()  # fails before any rendering when the DINO weights cannot be had
        if self.photometric:
            if self.render_output_path is not None:
                self.render_output_path.mkdir(parents=True, exist_ok=True)
            metrics = pipeline.get_average_eval_image_metrics(output_path=self.render_output_path, get_std=True)
        else:
            metrics = pipeline.propagation_metrics()
        info = {
            "experiment_name": config.experiment_name,
            "method_name": config.method_name,
            "checkpoint": str(checkpoint_path),
            "propagation": json.loads(json.dumps(dataclasses.asdict(self.propagation), default=str)),
            "results": metrics,
        }
        files.write_json(self.output_path, info)
        CONSOLE.print(f"Saved results to: {self.output_path}")


def entrypoint() -> None:
    errors.report_user_errors()
    tyro.cli(JacobiNerfEval).main()


if __name__ == "__main__":
    entrypoint()
