"""The viewer's JacobiNeRF panel: click to select an entity, paint labels, recolor, export.

Everything here is interaction state; the math (Jacobians, responses, recolor perturbation) comes from
:mod:`jacobinerf_ns.jacobians` and :mod:`jacobinerf_ns.propagation`. The panel drives the model's probe, and
:meth:`JacobiNerfPanel.decorate` turns the probe's responses into viewer outputs after each render:

* ``jacobinerf_response``: the clicked pixel's response, relative to its response to itself (heatmap);
* ``jacobinerf_selection``: the RGB with the selected entity (relative response > threshold) highlighted;
* ``jacobinerf_labels``: the sparse propagation of the painted label clicks.

A click is armed by a button for one click only (orbiting is locked while a pointer callback is registered).
Without a viewer server (ns-eval, ns-render) nothing here runs: the elements stay inert.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerClick,
    ViewerControl,
    ViewerDropdown,
    ViewerNumber,
    ViewerRGB,
    ViewerSlider,
    ViewerText,
)
from torch import Tensor, nn

from jacobinerf_ns import jacobians
from jacobinerf_ns.dataparsers.labels import palette
from jacobinerf_ns.propagation import (
    RESPONSES,
    Probe,
    assign_labels,
    probe_responses,
    ray_jacobians,
    relative_responses,
    render_responses,
)

RESPONSE, SELECTION, LABELS = "jacobinerf_response", "jacobinerf_selection", "jacobinerf_labels"
HIGHLIGHT = torch.tensor([1.0, 0.15, 0.1])
MIN_ACCUMULATION = 0.5
"""A click whose ray accumulates less opacity than this hit no surface."""


def click_ray(click: ViewerClick) -> RayBundle:
    """The ray through a viewer click (origin already in nerfstudio world units)."""
    return RayBundle(
        origins=torch.tensor(click.origin, dtype=torch.float32)[None],
        directions=torch.nn.functional.normalize(torch.tensor(click.direction, dtype=torch.float32), dim=0)[None],
        pixel_area=torch.full((1, 1), 1e-6),
        camera_indices=torch.zeros(1, 1, dtype=torch.long),
    )


class Click:
    """One clicked ray: its Jacobian, self-responses (2D, 3D), head inputs and colour."""

    def __init__(self, model, bundle: RayBundle, sigma: float) -> None:
        jacobian, outputs, head = ray_jacobians(model, bundle)
        self.jacobian = jacobian[:1]
        self.accumulation = float(outputs["accumulation"][0])
        self.color = tuple(round(float(c), 2) for c in outputs["rgb"][0])
        self.head = head
        self._model = model
        self.self_responses = self.responses_to_self(sigma)

    def responses_to_self(self, sigma: float):
        weight, bias = self._model.head_parameters()
        responses = probe_responses(
            self.head, weight.detach(), bias.detach(), Probe(self.jacobian, sigma=sigma), self._model.config.shape_bias
        )
        return {space: responses[key][0, 0] for space, key in RESPONSES.items()}


def reported(callback: Callable[[], None], panel: "JacobiNerfPanel") -> Callable[[object], None]:
    """A viewer callback that shows its failure in the panel's status (viser's threads would swallow it)."""

    def run(_element) -> None:
        try:
            callback()
        except Exception as error:  # shown to the user, and logged with its traceback
            CONSOLE.print_exception()
            panel.say(f"Error: {type(error).__name__}: {error}")

    return run


class JacobiNerfPanel(nn.Module):
    """Viewer elements of the JacobiNeRF panel (an ``nn.Module`` only so that nerfstudio's viewer finds them)."""

    def __init__(self, model) -> None:
        super().__init__()
        # A plain, underscored reference: not a submodule, and skipped by the viewer's attribute walk (no cycle).
        object.__setattr__(self, "_model", model)
        self.viewer_control = ViewerControl()
        self.status = ViewerText("Status", "Press a button, then click in the scene.", disabled=True)
        self.select = ViewerButton(
            "Select entity (arms one click)",
            cb_hook=reported(lambda: self.arm(self.on_select_click, "select an entity"), self),
        )
        self.sigma = ViewerSlider(
            "Perturbation σ", 0.1, 0.001, 1.0, 0.001, cb_hook=reported(lambda: self.refresh_probe(), self)
        )
        self.threshold = ViewerSlider("Selection threshold", 0.5, 0.0, 1.0, 0.01)
        self.space = ViewerDropdown("Response", "3d", ["3d", "2d"])
        self.label_name = ViewerText("Label name", "object", hint="The class the next label click paints")
        self.paint = ViewerButton(
            "Paint label (arms one click)",
            cb_hook=reported(lambda: self.arm(self.on_label_click, f"paint '{self.label_name.value}'"), self),
        )
        self.undo_label = ViewerButton("Undo last label", cb_hook=reported(lambda: self.undo(), self))
        self.clear_labels = ViewerButton("Clear labels", cb_hook=reported(lambda: self.clear(), self))
        self.recolor_to = ViewerRGB("Recolor to", (230, 40, 40))
        self.recolor = ViewerButton(
            "Recolor entity (arms one click)",
            cb_hook=reported(lambda: self.arm(self.on_recolor_click, "recolor an entity"), self),
        )
        self.recolor_strength = ViewerSlider(
            "Recolor strength", 1.0, 0.0, 2.0, 0.05, cb_hook=reported(lambda: self.apply_recolor(), self)
        )
        self.reset_colors = ViewerButton("Reset colors", cb_hook=reported(lambda: self.reset_recolor(), self))
        self.export = ViewerButton(
            "Export selection (masks + PLY)", cb_hook=reported(lambda: self.export_selection(), self)
        )
        self.view_index = ViewerNumber(
            "Training view", 0, hint="Index of the training view 'Go to training view' jumps to"
        )
        self.go_to_view = ViewerButton(
            "Go to training view",
            cb_hook=reported(lambda: self.jump_to_training_view(int(self.view_index.value)), self),
        )
        self.selection: Optional[Click] = None
        self._probe: Optional[Probe] = None
        self.label_clicks: List[Tuple[Click, str]] = []
        self._recolor_base: Optional[Tuple[Tensor, Tensor]] = None
        self._recolor_delta: Optional[Tensor] = None

    # ---- clicks ------------------------------------------------------------------------------------------------

    def arm(self, on_click: Callable[[ViewerClick], None], what: str) -> None:
        """Registers ``on_click`` for exactly one click (and unregisters it right after, restoring orbiting)."""
        if not hasattr(self.viewer_control, "viser_server"):
            self.say("No viewer is running.")
            return

        def once(click: ViewerClick) -> None:
            self.viewer_control.unregister_pointer_cb()
            lock = getattr(self.viewer_control.viewer, "train_lock", None)  # the lock the viewer's renders hold
            with lock if lock is not None else contextlib.nullcontext():
                reported(lambda: on_click(click), self)(None)
            self.rerender()

        self.viewer_control.register_pointer_cb("click", once)
        self.say(f"Click in the scene to {what}.")

    def clicked(self, click: ViewerClick) -> Optional[Click]:
        hit = Click(self._model, click_ray(click), self.sigma.value)
        if hit.accumulation < MIN_ACCUMULATION:
            self.say(f"No surface along that ray (opacity {hit.accumulation:.2f}): click on an object.")
            return None
        return hit

    def on_select_click(self, click: ViewerClick) -> None:
        self.selection = self.clicked(click)
        if self.selection is not None:
            self.say(
                f"Selected (clicked colour {self.selection.color}): see the jacobinerf_selection and jacobinerf_response outputs."
            )
        self.refresh_probe()

    def on_label_click(self, click: ViewerClick) -> None:
        hit = self.clicked(click)
        if hit is not None:
            self.label_clicks.append((hit, self.label_name.value))
            self.say(f"{len(self.label_clicks)} label clicks ({', '.join(self.label_names())}): see jacobinerf_labels.")
        self.refresh_probe()

    def on_recolor_click(self, click: ViewerClick) -> None:
        hit = self.clicked(click)
        if hit is None:
            return
        self.reset_recolor(rerender=False)
        target = torch.tensor(self.recolor_to.value, dtype=torch.float32) / 255.0
        head = hit.head
        self._recolor_delta = jacobians.recolor_delta(
            head.weights[0], head.rgb[0], head.features[0], target, self._model.config.shape_bias
        )
        self.apply_recolor(rerender=False)
        self.say("Recolored: move 'Recolor strength', or 'Reset colors' to restore the original head.")

    # ---- state -------------------------------------------------------------------------------------------------

    def label_names(self) -> List[str]:
        return list(dict.fromkeys(name for _, name in self.label_clicks))

    def undo(self) -> None:
        if self.label_clicks:
            self.label_clicks.pop()
        self.refresh_probe()
        self.rerender()

    def clear(self) -> None:
        self.label_clicks = []
        self.refresh_probe()
        self.rerender()

    def refresh_probe(self) -> None:
        """The model's probe = [selected click] + label clicks (one render gives every response)."""
        clicks = ([self.selection] if self.selection is not None else []) + [click for click, _ in self.label_clicks]
        if self.selection is not None:
            self.selection.self_responses = self.selection.responses_to_self(self.sigma.value)
        self._probe = Probe(torch.cat([c.jacobian for c in clicks]), sigma=self.sigma.value) if clicks else None
        self._model.probe = self._probe

    @torch.no_grad()
    def apply_recolor(self, rerender: bool = True) -> None:
        """Head = original + strength · ΔW (the original is kept, so reset is exact)."""
        if self._recolor_delta is None:
            return
        head = self._model.field.rgb_head
        if self._recolor_base is None:
            self._recolor_base = (head.weight.detach().clone(), head.bias.detach().clone())
        delta = self.recolor_strength.value * self._recolor_delta.to(head.weight)
        head.weight.copy_(self._recolor_base[0] + delta[:, : head.weight.shape[1]])
        head.bias.copy_(self._recolor_base[1] + (delta[:, -1] if delta.shape[1] > head.weight.shape[1] else 0.0))
        if rerender:
            self.rerender()

    @torch.no_grad()
    def reset_recolor(self, rerender: bool = True) -> None:
        if self._recolor_base is not None:
            head = self._model.field.rgb_head
            head.weight.copy_(self._recolor_base[0])
            head.bias.copy_(self._recolor_base[1])
        self._recolor_base = None
        self._recolor_delta = None
        if rerender:
            self.rerender()

    # ---- outputs -----------------------------------------------------------------------------------------------

    def decorate(self, outputs: dict) -> dict:
        """Replaces the panel probe's K-channel responses by the panel's viewer outputs (other probes pass through)."""
        if self._probe is None or self._model.probe is not self._probe:
            return outputs
        clicks = (self.selection is not None) + len(self.label_clicks)
        if any(key not in outputs or outputs[key].shape[-1] != clicks for key in RESPONSES.values()):
            return outputs  # the probe changed while this frame rendered (viewer thread); the next frame has it
        raw = {space: outputs.pop(key) for space, key in RESPONSES.items()}
        responses = raw[self.space.value]
        if self.selection is not None:
            relative = relative_responses(
                responses[..., :1], self.selection.self_responses[self.space.value].to(responses)
            )
            selected = (relative > self.threshold.value).to(outputs["rgb"])
            outputs[RESPONSE] = relative
            outputs[SELECTION] = outputs["rgb"] * (1 - 0.6 * selected) + 0.6 * selected * HIGHLIGHT.to(outputs["rgb"])
            responses = responses[..., 1:]
        if self.label_clicks:
            names = self.label_names()
            labels = assign_labels(responses, [names.index(name) + 1 for _, name in self.label_clicks])
            colors = palette(len(names) + 1).to(outputs["rgb"])
            outputs[LABELS] = 0.5 * outputs["rgb"] + 0.5 * colors[labels]
        return outputs

    def selection_mask(self, camera) -> Tuple[Tensor, dict]:
        """``(H, W)`` bool mask of the selected entity in ``camera``, and that render's outputs."""
        outputs = render_responses(self._model, camera, Probe(self.selection.jacobian, sigma=self.sigma.value))
        relative = relative_responses(
            outputs[RESPONSES[self.space.value]][..., 0],
            self.selection.self_responses[self.space.value].to(outputs["rgb"]),
        )
        return relative > self.threshold.value, outputs

    def export_selection(self, folder: Optional[Path] = None) -> Optional[Path]:
        """Masks of the selection for every training view (PNG) and the selected entity as a coloured point cloud (PLY)."""
        if self.selection is None:
            self.say("Select an entity first.")
            return None
        from PIL import Image

        if folder is None:
            folder = Path(self.viewer_control.viewer.log_filename).parent / "jacobinerf_export"
        datamanager = self.model_datamanager()
        outputs_meta = datamanager.train_dataparser_outputs
        cameras = outputs_meta.cameras
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        points, colors = [], []
        for index in range(len(cameras)):
            camera = cameras[index : index + 1]
            mask, outputs = self.selection_mask(camera)
            Image.fromarray((mask.cpu().numpy() * 255).astype(np.uint8)).save(
                folder / "masks" / f"{Path(outputs_meta.image_filenames[index]).stem}.png"
            )
            rays = camera.generate_rays(camera_indices=0, keep_shape=True)
            depth = outputs["depth"][..., 0].cpu()
            points.append((rays.origins + rays.directions * depth[..., None])[mask.cpu()])
            colors.append(outputs["rgb"].cpu()[mask.cpu()])
        world = torch.cat(points)
        original = (
            outputs_meta.transform_poses_to_original_space(
                torch.cat([torch.eye(3).expand(len(world), 3, 3), world[..., None]], dim=-1)
            )[:, :3, 3]
            if len(world)
            else world
        )
        write_ply(
            folder / "selection.ply", original.numpy(), (torch.cat(colors).clamp(0, 1).numpy() * 255).astype(np.uint8)
        )
        self.say(f"Exported {len(cameras)} masks and {len(world)} points to {folder}")
        return folder

    def model_datamanager(self):
        viewer = getattr(self.viewer_control, "viewer", None)
        pipeline = getattr(viewer, "pipeline", None) or getattr(self, "_pipeline", None)
        if pipeline is None:
            raise RuntimeError("The panel needs the pipeline (the viewer's, or set with attach_pipeline).")
        return pipeline.datamanager

    def attach_pipeline(self, pipeline) -> None:
        """For use without a viewer (scripts, tests): where export finds the training cameras."""
        object.__setattr__(self, "_pipeline", pipeline)

    def jump_to_training_view(self, index: int) -> None:
        """Puts every connected client's camera at training camera ``index`` (pose and vertical field of view)."""
        import viser.transforms as vtf
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        cameras = self.model_datamanager().train_dataparser_outputs.cameras
        if not 0 <= index < len(cameras):
            self.say(f"Training views are numbered 0..{len(cameras) - 1}.")
            return
        c2w = cameras.camera_to_worlds[index].cpu().numpy()
        rotation = vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)  # OpenGL camera → viser's OpenCV
        fov = float(2 * np.arctan(float(cameras.cy[index]) / float(cameras.fy[index])))
        for client in self.viewer_control.viser_server.get_clients().values():
            client.camera.fov = fov
            client.camera.wxyz = rotation.wxyz
            client.camera.position = c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO
        self.say(f"At training view {index}.")

    def say(self, message: str) -> None:
        self.status.value = message

    def rerender(self) -> None:
        viewer = getattr(self.viewer_control, "viewer", None)
        if viewer is not None:
            viewer._trigger_rerender()


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """Binary little-endian PLY with float xyz and uchar rgb."""
    vertex = np.empty(
        len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as file:
        file.write(header.encode())
        file.write(vertex.tobytes())
