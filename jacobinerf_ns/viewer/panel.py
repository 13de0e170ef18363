"""The viewer's JacobiNeRF panel: GUI elements and their callbacks, forwarding to a :class:`~.session.ViewerSession`.

A click is armed by a button for one click only (orbiting is locked while a pointer callback is registered) and
handled under the viewer's render lock. Without a viewer server (ns-eval, ns-render) nothing here runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

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
from torch import nn

from jacobinerf_ns.viewer.export import export_selection
from jacobinerf_ns.viewer.session import ViewerSession

if TYPE_CHECKING:
    from jacobinerf_ns.pipeline import JacobiNerfPipeline

EXPORT_FOLDER = "jacobinerf_export"
"""Where *Export selection* writes, beside the run's config."""


def click_ray(click: ViewerClick) -> RayBundle:
    """The ray through a viewer click (origin already in nerfstudio world units)."""
    return RayBundle(
        origins=torch.tensor(click.origin, dtype=torch.float32)[None],
        directions=torch.nn.functional.normalize(torch.tensor(click.direction, dtype=torch.float32), dim=0)[None],
        pixel_area=torch.full((1, 1), 1e-6),
        camera_indices=torch.zeros(1, 1, dtype=torch.long),
    )


class JacobiNerfPanel(nn.Module):
    """Viewer elements of the JacobiNeRF panel (an ``nn.Module`` only so that nerfstudio's viewer finds them)."""

    def __init__(self, pipeline: JacobiNerfPipeline) -> None:
        super().__init__()
        # A plain, underscored reference: not a submodule, and skipped by the viewer's attribute walk (no cycle).
        object.__setattr__(self, "_pipeline", pipeline)
        self.session = ViewerSession(pipeline.model)
        self.viewer_control = ViewerControl()
        self.status = ViewerText("Status", "Press a button, then click in the scene.", disabled=True)
        self.select = ViewerButton(
            "Select entity (arms one click)",
            cb_hook=self.reported(lambda: self.arm(self.on_select, "select an entity")),
        )
        self.sigma = ViewerSlider("Perturbation σ", 0.1, 0.001, 1.0, 0.001, cb_hook=self.setting("sigma"))
        self.threshold = ViewerSlider("Selection threshold", 0.5, 0.0, 1.0, 0.01, cb_hook=self.setting("threshold"))
        self.space = ViewerDropdown("Response", "3d", ["3d", "2d"], cb_hook=self.setting("space"))
        self.label_name = ViewerText("Label name", "object", hint="The class the next label click paints")
        self.paint = ViewerButton(
            "Paint label (arms one click)",
            cb_hook=self.reported(lambda: self.arm(self.on_label, f"paint '{self.label_name.value}'")),
        )
        self.undo_label = ViewerButton("Undo last label", cb_hook=self.reported(self.session.undo, rerender=True))
        self.clear_labels = ViewerButton("Clear labels", cb_hook=self.reported(self.session.clear, rerender=True))
        self.recolor_to = ViewerRGB("Recolor to", (230, 40, 40))
        self.recolor = ViewerButton(
            "Recolor entity (arms one click)",
            cb_hook=self.reported(lambda: self.arm(self.on_recolor, "recolor an entity")),
        )
        self.recolor_strength = ViewerSlider(
            "Recolor strength", 1.0, 0.0, 2.0, 0.05, cb_hook=self.setting("recolor_strength")
        )
        self.reset_colors = ViewerButton(
            "Reset colors", cb_hook=self.reported(self.session.reset_recolor, rerender=True)
        )
        self.export = ViewerButton("Export selection (masks + PLY)", cb_hook=self.reported(self.export_selection))
        self.view_index = ViewerNumber(
            "Training view", 0, hint="Index of the training view 'Go to training view' jumps to"
        )
        self.go_to_view = ViewerButton(
            "Go to training view", cb_hook=self.reported(lambda: self.jump_to_training_view(int(self.view_index.value)))
        )

    # ---- callbacks ---------------------------------------------------------------------------------------------

    def reported(self, callback: Callable[[], Optional[str]], rerender: bool = False) -> Callable[[object], None]:
        """A viewer callback whose message (or failure) is shown in the panel's status (viser's threads would swallow
        exceptions)."""

        def run(_element: object = None) -> None:
            try:
                message = callback()
                if message:
                    self.say(message)
            except Exception as error:  # shown to the user, and logged with its traceback
                CONSOLE.print_exception()
                self.say(f"Error: {type(error).__name__}: {error}")
            if rerender:
                self.rerender()

        return run

    def setting(self, name: str) -> Callable[[object], None]:
        """Callback of a slider/dropdown: copies its value into the session and redraws."""

        def apply() -> None:
            setattr(self.session, name, getattr(self, name).value)
            self.session.publish()

        return self.reported(apply, rerender=True)

    def arm(self, on_click: Callable[[RayBundle], str], what: str) -> None:
        """Registers ``on_click`` for exactly one click (and unregisters it right after, restoring orbiting)."""
        if not hasattr(self.viewer_control, "viser_server"):
            self.say("No viewer is running.")
            return

        def once(click: ViewerClick) -> None:
            self.viewer_control.unregister_pointer_cb()
            lock = getattr(self.viewer_control.viewer, "train_lock", None)  # the lock the viewer's renders hold
            with lock if lock is not None else contextlib.nullcontext():
                self.reported(lambda: on_click(click_ray(click)))()
            self.rerender()

        self.viewer_control.register_pointer_cb("click", once)
        self.say(f"Click in the scene to {what}.")

    def on_select(self, ray: RayBundle) -> str:
        return self.session.select(ray)

    def on_label(self, ray: RayBundle) -> str:
        return self.session.add_label(ray, self.label_name.value)

    def on_recolor(self, ray: RayBundle) -> str:
        return self.session.recolor(ray, tuple(channel / 255.0 for channel in self.recolor_to.value))

    # ---- export and camera -------------------------------------------------------------------------------------

    def export_selection(self, folder: Optional[Path] = None) -> str:
        if self.session.selection is None:
            return "Select an entity first."
        if folder is None:
            folder = Path(self.viewer_control.viewer.log_filename).parent / EXPORT_FOLDER
        masks, points = export_selection(self.session, self._pipeline.datamanager.train_dataparser_outputs, folder)
        return f"Exported {masks} masks and {points} points to {folder}"

    def jump_to_training_view(self, index: int) -> str:
        """Puts every connected client's camera at training camera ``index`` (pose and vertical field of view)."""
        import viser.transforms as vtf
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        cameras = self._pipeline.datamanager.train_dataparser_outputs.cameras
        if not 0 <= index < len(cameras):
            return f"Training views are numbered 0..{len(cameras) - 1}."
        c2w = cameras.camera_to_worlds[index].cpu().numpy()
        rotation = vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)  # OpenGL camera → viser's OpenCV
        fov = float(2 * np.arctan(float(cameras.cy[index]) / float(cameras.fy[index])))
        for client in self.viewer_control.viser_server.get_clients().values():
            client.camera.fov = fov
            client.camera.wxyz = rotation.wxyz
            client.camera.position = c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO
        return f"At training view {index}."

    def say(self, message: str) -> None:
        self.status.value = message

    def rerender(self) -> None:
        viewer = getattr(self.viewer_control, "viewer", None)
        if viewer is not None:
            viewer._trigger_rerender()
