"""The viewer's JacobiNeRF panel: GUI elements and their callbacks, forwarding to a :class:`~.session.ViewerSession`.

A click is armed by a button for one click only (orbiting is locked while a pointer callback is registered) and
handled under the viewer's render lock. Without a viewer server (ns-eval, ns-render) nothing here runs.

nerfstudio installs a module's elements in the alphabetical order of their attribute names (its ``parse_object``
walks ``dir()``), and a sub-module becomes a folder: the labelling elements live in the folder ``labels``, named so
that they read top-down in the order of the workflow.
"""

from __future__ import annotations

import contextlib
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Tuple

import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerCheckbox,
    ViewerClick,
    ViewerControl,
    ViewerDropdown,
    ViewerNumber,
    ViewerRGB,
    ViewerSlider,
    ViewerText,
)
from torch import nn

from jacobinerf_ns.clicks import loads_clicks, read_clicks
from jacobinerf_ns.compat import (
    ViewerDownloadButton,
    ViewerMarkdown,
    ViewerMarkers,
    ViewerUploadButton,
    rerender_viewer,
)
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.scene import dataset_scene, frame_masks
from jacobinerf_ns.view_cache import ViewCache
from jacobinerf_ns.viewer.export import export_selection
from jacobinerf_ns.viewer.session import ViewerSession
from jacobinerf_ns.viewer.settings import ViewerSettings
from jacobinerf_ns.viewer.suggestions import Suggestion

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from jacobinerf_ns.datamanager import JacobiNerfDataManager
    from jacobinerf_ns.model import JacobiNerfModel

EXPORT_FOLDER = "jacobinerf_export"
"""Where *Export selection* writes, beside the run's config."""
CLICKS_FILE = "clicks.json"
"""*Save clicks* / *Load clicks* default, beside the run's config (relative paths are taken from there)."""
AUTOSAVE_FILE = "clicks.autosave.json"
"""Written beside the run's config after every change of the label clicks."""
SUGGESTION_SIDE = 96
"""Suggestions judge renders whose longer side is at most this many pixels (the 5-pixel box of
:func:`~jacobinerf_ns.propagation.labelling.weakest_region` is then ~5% of the view)."""
MARKER_SIZE = 0.02
"""Diameter of a label click's marker, in nerfstudio's units (its scene fits in [-1, 1]³)."""
SUGGESTION_COLOR = (1.0, 0.0, 1.0)
NO_CLICKS = "(no label clicks)"


def click_ray(click: ViewerClick) -> RayBundle:
    """The ray through a viewer click (origin already in nerfstudio world units)."""
    return RayBundle(
        origins=torch.tensor(click.origin, dtype=torch.float32)[None],
        directions=torch.nn.functional.normalize(torch.tensor(click.direction, dtype=torch.float32), dim=0)[None],
        pixel_area=torch.full((1, 1), 1e-6),
        camera_indices=torch.zeros(1, 1, dtype=torch.long),
    )


def markdown_text(text: str) -> str:
    """``text`` shown literally by viser's markdown (MDX): markup characters as numeric character references."""
    return "".join(f"&#{ord(c)};" if c in "\\`*_{}[]()<>#+-.!|&~" else c for c in text)


def status_markdown(message: str) -> str:
    return f"**Status:** {markdown_text(message)}"


class JacobiNerfPanel(nn.Module):
    """Viewer elements of the JacobiNeRF panel (an ``nn.Module`` only so that nerfstudio's viewer finds them)."""

    def __init__(self, model: JacobiNerfModel, datamanager: JacobiNerfDataManager) -> None:
        super().__init__()
        # A plain, underscored reference: not a submodule, and skipped by the viewer's attribute walk.
        object.__setattr__(self, "_datamanager", datamanager)
        scene = cache(lambda: dataset_scene(datamanager))
        self.session = ViewerSession(
            model, scene=scene, masks=lambda frames: frame_masks(datamanager, frames), progress=self.say
        )
        self._suggestion: Optional[Suggestion] = None  # the one the marker shows (what 'Skip suggestion' dismisses)
        self.viewer_control = ViewerControl()
        # The last message, shown whole (wrapped) by the status element; `activity` is named to sort first.
        self.message = "Press a button, then click in the scene."
        self.activity = ViewerMarkdown("Status", status_markdown(self.message))
        self.select = ViewerButton(
            "Select entity (arms one click)",
            cb_hook=self.reported(lambda: self.arm(self.on_select, "select an entity")),
        )
        self.sigma = ViewerSlider("Perturbation σ", 0.1, 0.001, 1.0, 0.001, cb_hook=self.setting("sigma"))
        self.threshold = ViewerSlider(
            "Selection threshold",
            ViewerSettings.threshold,
            0.0,
            1.0,
            0.01,
            cb_hook=self.setting("threshold"),
            hint="With Label propagation: nearest, the |cos| to the clicked Jacobian above which a pixel is selected",
        )
        self.space = ViewerDropdown("Response", "3d", ["3d", "2d"], cb_hook=self.setting("space"))
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
        self.labels = self.labelling_folder()

    def labelling_folder(self) -> nn.Module:
        """The ``labels`` folder: classes, label clicks, suggestions, click-set files (names sort in this order)."""
        folder = nn.Module()
        folder.class_name = ViewerText("Class name", "object", hint="The class the next label click paints")
        folder.class_paint = ViewerButton(
            "Paint label (arms one click)",
            cb_hook=self.reported(lambda: self.arm(self.on_label, f"paint '{self.labels.class_name.value}'")),
        )
        folder.classes = ViewerMarkdown("Legend", self.legend_markdown())
        folder.classes_propagation = ViewerDropdown(
            "Label propagation",
            ViewerSettings.propagation,
            ["surface", "nearest"],
            cb_hook=self.reported(
                lambda: self.session.set_propagation(self.labels.classes_propagation.value), rerender=True
            ),
            hint="surface: the clicks' classes spread over the surfaces (and masks) of the training frames, as "
            "jacobinerf-label labels, and so does the selected entity; nearest: each pixel takes the class of the "
            "click it looks most like, and the selection is by the threshold",
        )
        folder.click_choice = ViewerDropdown(
            "Label clicks", NO_CLICKS, [NO_CLICKS], hint="The click 'Delete click' removes"
        )
        folder.click_delete = ViewerButton("Delete click", cb_hook=self.labelling(self.delete_chosen_click))
        folder.click_undo = ViewerButton("Undo last label", cb_hook=self.labelling(self.session.labels.undo))
        folder.clicks_clear = ViewerButton("Clear labels", cb_hook=self.labelling(self.session.clear_labels))
        folder.clicks_suggest = ViewerButton("Suggest next click", cb_hook=self.reported(self.suggest_next_click))
        # nothing to label at the magenta marker: what it resembles counts as done, and the next one is marked
        folder.clicks_suggest_skip = ViewerButton("Skip suggestion", cb_hook=self.reported(self.skip_suggestion))
        folder.clicks_suggest_view = ViewerButton(
            "Go to least-explained training view", cb_hook=self.reported(self.go_to_least_explained_view)
        )
        folder.file = ViewerText(
            "Clicks file", CLICKS_FILE, hint="A click-set JSON file (docs/clicks.md); relative to the run's folder"
        )
        folder.file_load = ViewerButton("Load clicks", cb_hook=self.labelling(self.load_clicks))
        folder.file_load_force = ViewerCheckbox(
            "Load from another scene", False, hint="Load clicks whose scene fingerprint differs from this scene's"
        )
        folder.file_save = ViewerButton("Save clicks", cb_hook=self.reported(self.save_clicks))
        folder.file_save_to_browser = ViewerDownloadButton("Download clicks", self.clicks_download)
        folder.file_upload = ViewerUploadButton(
            "Upload clicks",
            cb_hook=self.labelling(lambda: self.load_uploaded(*self.labels.file_upload.file)),
            mime_type="application/json",
            hint="Load a click-set JSON file from this computer",
        )
        folder.markers = ViewerMarkers("label_clicks", MARKER_SIZE)
        folder.suggestion = ViewerMarkers("suggested_click", 2 * MARKER_SIZE, shape="sparkle")
        return folder

    # ---- callbacks ---------------------------------------------------------------------------------------------

    def reported(self, callback: Callable[[], Optional[str]], rerender: bool = False) -> Callable[[object], None]:
        """A viewer callback whose message (or failure) is shown in the panel's status (viser's threads would swallow
        exceptions). A :class:`JacobiNerfError` is the user's to fix: its message alone; anything else is a bug."""

        def run(_element: object = None) -> None:
            try:
                message = callback()
                if message:
                    self.say(message)
            except JacobiNerfError as error:
                self.say(error.message)
            except Exception as error:  # shown to the user, and logged with its traceback
                CONSOLE.print_exception()
                self.say(f"Error: {type(error).__name__}: {error}")
            if rerender:
                self.rerender()

        return run

    def labelling(self, callback: Callable[[], Optional[str]]) -> Callable[[object], None]:
        """A callback that changes the label clicks: afterwards the legend, click list, markers and autosave follow."""

        def run() -> Optional[str]:
            message = callback()
            self.labels_changed()
            return message

        return self.reported(run, rerender=True)

    def setting(self, name: str) -> Callable[[object], None]:
        """Callback of a slider/dropdown: copies its value into the session and redraws."""

        def apply() -> None:
            setattr(self.session.settings, name, getattr(self, name).value)
            self.session.publish()

        return self.reported(apply, rerender=True)

    def arm(self, on_click: Callable[[RayBundle], str], what: str) -> None:
        """Registers ``on_click`` for exactly one click (and unregisters it right after, restoring orbiting)."""
        if not hasattr(self.viewer_control, "viser_server"):
            self.say("No viewer is running.")
            return

        if self.session.model.view_cache is None:  # a viewer is running: keep its last field pass
            self.session.model.view_cache = ViewCache()

        def once(click: ViewerClick) -> None:
            self.viewer_control.unregister_pointer_cb()
            lock = getattr(self.viewer_control.viewer, "train_lock", None)  # the lock the viewer's renders hold
            with lock if lock is not None else contextlib.nullcontext():
                self.reported(lambda: on_click(click_ray(click)))()
            self.rerender()

        self.viewer_control.register_pointer_cb("click", once)
        self.say(f"Click in the scene to {what}.")

    def on_select(self, ray: RayBundle) -> str:
        return self.session.selection.select(ray)

    def on_label(self, ray: RayBundle) -> str:
        message = self.session.labels.add(ray, self.labels.class_name.value)
        self.labels_changed()
        return message

    def on_recolor(self, ray: RayBundle) -> str:
        return self.session.recolor(ray, tuple(channel / 255.0 for channel in self.recolor_to.value))

    # ---- labels ------------------------------------------------------------------------------------------------

    def legend_markdown(self) -> str:
        """A table of the classes: colour (a chip after its hex code), name, number of clicks."""
        entries = self.session.labels.legend()
        if not entries:
            return "*No classes yet: type a class name, then Paint label.*"
        rows = [
            f"| `#{''.join(f'{round(255 * c):02x}' for c in entry.color)}` | {markdown_text(entry.name)} "
            f"| {entry.clicks} |"
            for entry in entries
        ]
        return "\n".join(["| colour | class | clicks |", "|:--|:--|--:|", *rows])

    def click_options(self) -> list:
        """``3 · chair · ray`` per label click (its number, class, what was clicked)."""
        return [f"{index + 1} · {click.describe()}" for index, click in enumerate(self.session.labels.clicks)]

    def labels_changed(self) -> None:
        """Legend, click list and markers show the session's label clicks; the autosave beside the run is written."""
        labels = self.labels
        labels.classes.content = self.legend_markdown()
        options = self.click_options() or [NO_CLICKS]
        labels.click_choice.set_options(options)
        labels.click_choice.value = options[-1]
        labels.markers.show(*self.session.labels.markers())
        labels.suggestion.show(np.zeros((0, 3)), np.zeros((0, 3)))
        self._suggestion = None
        folder = self.run_folder()
        if folder is not None:
            self.session.files.save(folder / AUTOSAVE_FILE)

    def delete_chosen_click(self) -> str:
        options = self.click_options()
        chosen = self.labels.click_choice.value
        if chosen not in options:
            return "Choose a label click to delete."
        return self.session.labels.delete(options.index(chosen))

    def clicks_path(self) -> Path:
        """*Clicks file*; a relative path is taken from the run's folder."""
        path = Path(self.labels.file.value.strip() or CLICKS_FILE).expanduser()
        if path.is_absolute():
            return path
        folder = self.run_folder()
        if folder is None:
            raise JacobiNerfError(f"No run folder is known: give the clicks file {path} as an absolute path.")
        return folder / path

    def save_clicks(self) -> str:
        path = self.clicks_path()
        message = self.session.files.save(path)
        return f"{message}: jacobinerf-label --clicks {path} labels every frame."

    def load_clicks(self) -> str:
        path = self.clicks_path()
        return self.session.files.load(read_clicks(path), str(path), force=self.labels.file_load_force.value)

    def load_uploaded(self, name: str, content: bytes) -> str:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise JacobiNerfError(f"Uploaded file {name} is not UTF-8 text: upload a clicks JSON file.") from None
        source = f"{name} (uploaded)"
        return self.session.files.load(loads_clicks(text, source), source, force=self.labels.file_load_force.value)

    def clicks_download(self) -> Tuple[str, bytes]:
        """The click set as the file the browser downloads."""
        saved = self.session.files.click_set()
        self.say(f"Sent {CLICKS_FILE} ({len(saved.clicks)} clicks) to the browser.")
        return CLICKS_FILE, json.dumps(saved.to_json(), indent=2).encode("utf-8")

    # ---- suggestions -------------------------------------------------------------------------------------------

    def suggest_next_click(self) -> str:
        """Marks the region of what the viewer shows now that the clicks explain least (a low-resolution render)."""
        camera = self.viewer_camera(SUGGESTION_SIDE)
        if camera is None:
            return "No viewer is running."
        suggestion = self.session.suggestions.suggest(camera)
        if suggestion is None:
            return "Nothing in this view hits a surface: turn the camera towards the scene."
        self.mark(suggestion)
        return (
            f"The clicks explain the magenta marker least ({suggestion.guide} {suggestion.explained:.2f}, view mean "
            f"{suggestion.view_explained:.2f}): paint a label there."
        )

    def go_to_least_explained_view(self) -> str:
        """Jumps to the training view the clicks explain least (every view rendered at low resolution)."""
        cameras = self._datamanager.train_dataparser_outputs.cameras
        ranking = self.session.suggestions.least_explained_view(
            cameras, SUGGESTION_SIDE, lambda done, total: self.say(f"Judging training views: {done}/{total}")
        )
        self.jump_to_training_view(ranking.index)
        means = ranking.mean_explained
        message = (
            f"At training view {ranking.index}, the one the clicks explain least (mean {means[ranking.index]:.2f}; "
            f"the {len(means)} views: {min(means):.2f} to {max(means):.2f})"
        )
        if ranking.suggestion is None:
            return message + "."
        self.mark(ranking.suggestion)
        return message + ": paint a label at the magenta marker."

    def skip_suggestion(self) -> str:
        """Dismisses the marked suggestion (:meth:`~.suggestions.Suggestions.dismiss`) and suggests again in the
        current view."""
        if self._suggestion is None:
            return "No suggestion to skip: press 'Suggest next click' first."
        skipped = self.session.suggestions.dismiss(self._suggestion)
        return f"{skipped}. {self.suggest_next_click()}"

    def mark(self, suggestion: Suggestion) -> None:
        self._suggestion = suggestion
        self.labels.suggestion.show(
            np.array([suggestion.marker]), np.array([SUGGESTION_COLOR]), size=suggestion.marker_size
        )

    def viewer_camera(self, max_side: int) -> Optional[Cameras]:
        """The first browser's camera, its longer side ``max_side`` pixels (``None`` without a browser)."""
        clients = self.viewer_clients()
        if not clients:
            return None
        aspect = next(iter(clients.values())).camera.aspect
        height, width = (
            (max_side, max(1, round(max_side * aspect))) if aspect < 1 else (round(max_side / aspect), max_side)
        )
        return self.viewer_control.get_camera(max(1, height), width)

    # ---- export and camera -------------------------------------------------------------------------------------

    def export_selection(self, folder: Optional[Path] = None) -> str:
        if self.session.selection.clicked is None:
            return "Select an entity first."
        if folder is None:
            if self.run_folder() is None:
                return "No viewer is running."
            folder = self.run_folder() / EXPORT_FOLDER
        masks, points = export_selection(self.session.selection, self._datamanager.train_dataparser_outputs, folder)
        return f"Exported {masks} masks and {points} points to {folder}"

    def jump_to_training_view(self, index: int) -> str:
        """Puts every connected client's camera at training camera ``index`` (pose and vertical field of view)."""
        import viser.transforms as vtf
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        cameras = self._datamanager.train_dataparser_outputs.cameras
        if not 0 <= index < len(cameras):
            return f"Training views are numbered 0..{len(cameras) - 1}."
        c2w = cameras.camera_to_worlds[index].cpu().numpy()
        rotation = vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)  # OpenGL camera → viser's OpenCV
        fov = float(2 * np.arctan(float(cameras.cy[index]) / float(cameras.fy[index])))
        for client in self.viewer_clients().values():
            client.camera.fov = fov
            client.camera.wxyz = rotation.wxyz
            client.camera.position = c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO
        self.view_index.value = index
        return f"At training view {index}."

    def viewer_clients(self) -> dict:
        server = getattr(self.viewer_control, "viser_server", None)
        return {} if server is None else server.get_clients()

    def run_folder(self) -> Optional[Path]:
        """The folder of the run's config, where the viewer keeps its files (``None`` without a viewer)."""
        viewer = getattr(self.viewer_control, "viewer", None)
        return None if viewer is None else Path(viewer.log_filename).parent

    def say(self, message: str) -> None:
        self.message = message
        self.activity.content = status_markdown(message)

    def rerender(self) -> None:
        viewer = getattr(self.viewer_control, "viewer", None)
        if viewer is not None:
            rerender_viewer(viewer)
