"""Every workaround for nerfstudio 1.1.5's internals, in one place; each is applied where it is needed.

* :func:`allow_numpy_scalars` — nerfstudio's schedulers store numpy float64 learning rates in checkpoints, and
  ``ns-eval`` / ``ns-viewer`` / resume call ``torch.load`` without ``weights_only`` (``True`` by default since torch
  2.6). Applied by :func:`read_checkpoint`.
* :func:`check_checkpoint_loads` — nerfstudio's checkpoint loaders (``eval_load_checkpoint``: ``ns-eval``,
  ``ns-viewer``, ``ns-render``; the trainer's resume: ``ns-train --load-dir``, ``jacobinerf-shape``) call
  ``torch.load`` and ``load_state_dict`` on whatever file is there, so a damaged checkpoint or another model's ends in
  a traceback. Applied when a jacobinerf pipeline is built: each load reads through :func:`read_checkpoint` instead
  (``torch.load`` replaced for the duration of that one call), which raises a
  :class:`~jacobinerf_ns.errors.JacobiNerfError` naming the file and the fix.
* :func:`nerfacto_parts` — nerfacto builds its field and its LPIPS inside ``populate_modules`` by module-level names.
  The model swaps in its field and an LPIPS that does not download by replacing those names for the duration of that
  one call (an explicit, scoped replacement; overriding ``populate_modules`` would copy ~80 lines of nerfacto), and
  :func:`check_nerfacto_parts` verifies afterwards that the swap took.
* :class:`OfflineLPIPS` — nerfacto's LPIPS downloads AlexNet weights when it is built, which fails offline.
* :func:`progress_from_checkpoint` — nerfstudio's progress line (% done, ETA) takes ``max_num_iterations`` as the
  last step, while a run continued from a checkpoint trains that many steps *after* it (``jacobinerf-shape``).
* :class:`~jacobinerf_ns.trainer.SavedOnStartTrainerConfig` — ``ns-train`` writes the run's ``config.yml`` (creating
  its folder) before the pipeline is built, so a run stopped by a bad option or bad data left a folder holding only
  ``config.yml``. Its own module, since it imports nerfstudio's trainer, and this one is imported while that loads.
* Named accessors of nerfstudio's private attributes, the only place they are read: :func:`eval_dataparser_outputs`,
  :func:`trainer_start_step`, :func:`rerender_viewer`, :func:`nerfstudio_image_path`.
* Viewer elements nerfstudio 1.1.5 lacks, built on viser 0.2.7 like nerfstudio's own (the viewer installs every
  :class:`~nerfstudio.viewer.viewer_elements.ViewerElement` it finds on the pipeline): :class:`ViewerMarkdown` (text,
  e.g. a legend), :class:`ViewerUploadButton` and :class:`ViewerDownloadButton` (files between the browser and the
  viewer), :class:`ViewerMarkers` (coloured points in the 3D scene).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerElement

from jacobinerf_ns.errors import JacobiNerfError

NERFSTUDIO_VERSION = "1.1.5"
"""The nerfstudio release these workarounds are written for (``pyproject.toml`` pins it)."""


def allow_numpy_scalars() -> None:
    """Registers numpy scalar reconstruction (and its dtypes) as safe globals for ``torch.load``."""
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        from numpy._core.multiarray import scalar
    else:
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    torch.serialization.add_safe_globals([scalar, np.dtype, *dtypes])


def read_checkpoint(path: Path, pipeline: Optional[torch.nn.Module] = None, **load_options: Any) -> dict:
    """The state nerfstudio saved in checkpoint ``path`` (``torch.load`` with ``load_options``). Raises
    :class:`JacobiNerfError` naming the file and the fix when it cannot be read, is no nerfstudio checkpoint, or
    (given ``pipeline``) holds model weights that ``pipeline`` cannot load."""
    allow_numpy_scalars()
    try:
        state = torch.serialization.load(path, **load_options)  # not torch.load: check_checkpoint_loads replaces it
    except Exception as error:  # arbitrary bytes raise many types (RuntimeError, KeyError, EOFError, UnpicklingError)
        reason = str(error).split(". ")[0].strip()
        raise unusable_checkpoint(
            path,
            f"cannot be read ({type(error).__name__}{': ' + reason if reason else ''}): it is damaged (an interrupted "
            "save, a full disk) or not a checkpoint",
        ) from error
    if not (isinstance(state, dict) and "step" in state and isinstance(state.get("pipeline"), dict)):
        raise unusable_checkpoint(path, f"is not a nerfstudio checkpoint (a {type(state).__name__} without a pipeline)")
    misfit = "" if pipeline is None else weights_misfit(state["pipeline"], pipeline.state_dict())
    if misfit:
        raise unusable_checkpoint(
            path,
            f"holds another model's weights ({misfit}): it is another method's checkpoint, or one trained with other "
            "model options",
        )
    return state


def unusable_checkpoint(path: Path, problem: str) -> JacobiNerfError:
    """``Checkpoint <path> <problem>.`` and the fix: load the folder's latest other checkpoint, or retrain."""
    path = Path(path)
    others = sorted(other.name for other in path.parent.glob("step-*.ckpt") if other.name != path.name)
    fix = (
        f"Move it out of {path.parent} so that the latest other checkpoint ({others[-1]}) loads, or train the run "
        "again."
        if others
        else "It is the run's only checkpoint: train the run again."
    )
    return JacobiNerfError(f"Checkpoint {path} {problem}. {fix}")


def weights_misfit(saved: Dict[str, Any], expected: Dict[str, Any]) -> str:
    """Why nerfstudio's strict load of the model weights in pipeline state ``saved`` into a pipeline whose state is
    ``expected`` fails (weights missing, unexpected, of another shape; one example each); empty when it succeeds."""

    def model_weights(state: Dict[str, Any]) -> Dict[str, Any]:  # DDP's "module." prefixes dropped, as nerfstudio does
        entries = {key.removeprefix("module."): value for key, value in state.items()}
        return {
            key.replace("_model.module.", "_model.", 1): value
            for key, value in entries.items()
            if key.startswith("_model.")
        }

    found, wanted = model_weights(saved), model_weights(expected)
    problems = {
        "missing": wanted.keys() - found.keys(),
        "unexpected": found.keys() - wanted.keys(),
        "of another shape": {
            key for key in wanted.keys() & found.keys()
            if getattr(found[key], "shape", None) != getattr(wanted[key], "shape", None)
        },
    }  # fmt: skip
    return "; ".join(f"{len(keys)} {kind}, e.g. {min(keys)}" for kind, keys in problems.items() if keys)


def check_checkpoint_loads() -> None:
    """Makes nerfstudio's checkpoint loaders (``eval_load_checkpoint``, ``Trainer._load_checkpoint``) read through
    :func:`read_checkpoint`, checked against the pipeline they load into (idempotent)."""
    from nerfstudio.engine.trainer import Trainer
    from nerfstudio.utils import eval_utils

    loaders = (
        (eval_utils, "eval_load_checkpoint", lambda config, pipeline: pipeline),
        (Trainer, "_load_checkpoint", lambda trainer: trainer.pipeline),
    )
    for owner, name, pipeline_of in loaders:
        loader = getattr(owner, name)
        if not getattr(loader, "reads_checkpoints", False):
            setattr(owner, name, reading_checkpoints(loader, pipeline_of))


def reading_checkpoints(loader: Callable, pipeline_of: Callable) -> Callable:
    """``loader`` with ``torch.load`` = :func:`read_checkpoint` against ``pipeline_of(*arguments)`` during each call."""

    @functools.wraps(loader)
    def checked(*arguments: Any) -> Any:
        with replaced_attributes(torch, load=functools.partial(read_checkpoint, pipeline=pipeline_of(*arguments))):
            return loader(*arguments)

    checked.reads_checkpoints = True  # type: ignore[attr-defined]
    return checked


class OfflineLPIPS(torch.nn.Module):
    """LPIPS built on first use; without network (its AlexNet weights download) it reports itself unavailable."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize
        self.available = True
        self._metric = None

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._metric is None and self.available:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            try:
                self._metric = LearnedPerceptualImagePatchSimilarity(normalize=self.normalize).to(preds.device)
            except Exception as error:  # offline: URLError / OSError from the weight download
                self.available = False
                CONSOLE.print(f"[yellow]LPIPS unavailable ({type(error).__name__}); it is left out of the metrics.")
        if self._metric is None:
            return torch.full((), float("nan"))
        return self._metric(preds, target)


@contextlib.contextmanager
def replaced_attributes(owner: object, **replacements: object) -> Iterator[None]:
    """Within the block, ``owner.<name>`` is ``replacements[name]``; the originals are restored afterwards."""
    originals = {name: getattr(owner, name) for name in replacements}
    try:
        for name, value in replacements.items():
            setattr(owner, name, value)
        yield
    finally:
        for name, value in originals.items():
            setattr(owner, name, value)


@contextlib.contextmanager
def progress_from_checkpoint(checkpoint_step: int) -> Iterator[None]:
    """Within the block, nerfstudio's local writer ends its progress at ``checkpoint_step + 1 + max_num_iterations``,
    the trainer's last step + 1 when it resumes from a checkpoint saved at ``checkpoint_step``."""
    from nerfstudio.utils import writer

    setup_local_writer = writer.setup_local_writer

    def shifted(config: Any, max_iter: int, banner_messages: Optional[list] = None) -> None:
        setup_local_writer(config, max_iter=checkpoint_step + 1 + max_iter, banner_messages=banner_messages)

    with replaced_attributes(writer, setup_local_writer=shifted):
        yield


@contextlib.contextmanager
def nerfacto_parts(field_class: Callable) -> Iterator[None]:
    """During ``NerfactoModel.populate_modules``: nerfacto builds ``field_class`` and :class:`OfflineLPIPS`."""
    import nerfstudio.models.nerfacto as nerfacto
    import torchmetrics.image.lpip as lpip

    with replaced_attributes(nerfacto, NerfactoField=field_class):
        with replaced_attributes(lpip, LearnedPerceptualImagePatchSimilarity=OfflineLPIPS):
            yield


def check_nerfacto_parts(model: torch.nn.Module, field_type: type) -> None:
    """Raises when :func:`nerfacto_parts` did not take (a nerfstudio other than the pinned release)."""
    from importlib.metadata import version

    built = {"field": (model.field, field_type), "lpips": (model.lpips, OfflineLPIPS)}
    wrong = [
        f"{name} is a {type(part).__name__}"
        for name, (part, expected) in built.items()
        if not isinstance(part, expected)
    ]
    if wrong:
        raise RuntimeError(
            f"jacobinerf could not build its parts into nerfacto ({', '.join(wrong)}): it supports nerfstudio "
            f"{NERFSTUDIO_VERSION}, and nerfstudio {version('nerfstudio')} is installed. "
            f"Install nerfstudio=={NERFSTUDIO_VERSION}."
        )


def eval_dataparser_outputs(datamanager: Any) -> Any:
    """The eval split's ``DataparserOutputs`` (nerfstudio keeps them only on the eval dataset, privately)."""
    return datamanager.eval_dataset._dataparser_outputs


def trainer_start_step(trainer: Any) -> int:
    """The first step a trainer trains (0, or the step after the checkpoint it resumes from)."""
    return trainer._start_step


def rerender_viewer(viewer: Any) -> None:
    """nerfstudio's viewer renders its clients' views again (the render in progress is interrupted)."""
    viewer._trigger_rerender()


def nerfstudio_image_path(parser: Any, file_path: Path, data_dir: Path) -> Path:
    """The image file nerfstudio's ``Nerfstudio`` dataparser ``parser`` reads for a frame's ``file_path`` (its
    downscaled copy, ``images_2/…``, when the parser downscales)."""
    return parser._get_fname(file_path, data_dir)


class ViewerMarkdown(ViewerElement[str]):
    """Markdown text in the panel (viser renders GitHub tables, and a colour chip after inline code such as
    ```#e6282a```). ``name`` only identifies it; :attr:`content` is what is shown."""

    def __init__(self, name: str, content: str = "") -> None:
        super().__init__(name)
        self._content = content

    def _create_gui_handle(self, viser_server) -> None:
        self.gui_handle = viser_server.gui.add_markdown(self._content)

    def install(self, viser_server) -> None:
        self._create_gui_handle(viser_server)

    @property
    def content(self) -> str:
        return self._content

    @content.setter
    def content(self, content: str) -> None:
        self._content = content
        if self.gui_handle is not None:
            self.gui_handle.content = content


class ViewerUploadButton(ViewerElement[Any]):
    """A button that lets the browser upload one file: once it has arrived, :attr:`file` is its ``(name, content)``
    and ``cb_hook(element)`` runs."""

    def __init__(self, name: str, cb_hook: Callable, mime_type: str = "*/*", hint: Optional[str] = None) -> None:
        super().__init__(name, cb_hook=cb_hook)
        self.mime_type = mime_type
        self.hint = hint
        self.file: Optional[Tuple[str, bytes]] = None

    def _create_gui_handle(self, viser_server) -> None:
        self.gui_handle = viser_server.gui.add_upload_button(self.name, mime_type=self.mime_type, hint=self.hint)

    def install(self, viser_server) -> None:
        self._create_gui_handle(viser_server)
        self.gui_handle.on_upload(self._received)

    def _received(self, event) -> None:
        uploaded = event.target.value
        self.file = (uploaded.name, uploaded.content)
        self.cb_hook(self)


class ViewerDownloadButton(ViewerButton):
    """A button that sends the browser that pressed it a file: ``content()`` gives ``(file name, bytes)``, or
    ``None`` when there is nothing to send."""

    def __init__(self, name: str, content: Callable[[], Optional[Tuple[str, bytes]]]) -> None:
        super().__init__(name, cb_hook=lambda element: None)
        self.content = content

    def install(self, viser_server) -> None:
        self._create_gui_handle(viser_server)
        self.gui_handle.on_click(self._send)

    def _send(self, event) -> None:
        self.cb_hook(self)  # the viewer's own hook (it re-renders)
        file = self.content()
        if file is not None:
            event.client.send_file_download(*file)


class ViewerMarkers(ViewerElement[Any]):
    """Coloured points in the viewer's 3D scene, given in nerfstudio's world frame (viser's scene is that frame times
    ``VISER_NERFSTUDIO_SCALE_RATIO``). :meth:`show` replaces them; before the viewer installs the element it only
    keeps them (:attr:`points`, :attr:`colors`)."""

    def __init__(self, name: str, size: float, shape: str = "circle") -> None:
        super().__init__(name)
        self.size = size
        self.shape = shape
        self.points = np.zeros((0, 3), dtype=np.float32)
        self.colors = np.zeros((0, 3), dtype=np.uint8)
        self._server = None

    def _create_gui_handle(self, viser_server) -> None:
        self._server = viser_server
        self._draw()

    def install(self, viser_server) -> None:
        self._create_gui_handle(viser_server)

    def show(self, points: np.ndarray, colors: np.ndarray, size: Optional[float] = None) -> None:
        """``points`` ``(N, 3)`` in nerfstudio's frame, ``colors`` ``(N, 3)`` in [0, 1]; ``size`` (nerfstudio's units)
        replaces the one given at construction."""
        if size is not None:
            self.size = size
        self.points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        self.colors = (np.asarray(colors, dtype=np.float32).reshape(-1, 3) * 255).round().astype(np.uint8)
        self._draw()

    def _draw(self) -> None:
        if self._server is None:
            return
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        if self.gui_handle is not None:
            self.gui_handle.remove()
            self.gui_handle = None
        if len(self.points):
            self.gui_handle = self._server.scene.add_point_cloud(
                f"/jacobinerf/{self.name}",
                points=self.points * VISER_NERFSTUDIO_SCALE_RATIO,
                colors=self.colors,
                point_size=self.size * VISER_NERFSTUDIO_SCALE_RATIO,
                point_shape=self.shape,
            )
