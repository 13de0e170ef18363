"""Labelling a scene with a click set: clicks → rays of a run → Jacobians → class scores, confidence, label maps.

A click set (:mod:`jacobinerf_ns.clicks`) names pixels of dataset images and rays in the original frame of the
poses; here they become rays in the run's normalised frame, and their Jacobians are computed from the run (never
stored). For a target pixel p with responses ``R_k(p)`` to the K clicks (:mod:`.probe`, one render per frame):

* each click perturbs the head by the same length σ along its Jacobian (:func:`unit_perturbations`), so
  ``R_k(p) = σ ‖J_p‖ |cos(J_p, J_k)|`` (linear): p's best response is to the click it is most like;
* class score ``s_c(p) = max_{k of class c} R_k(p)``; label = ``argmax_c s_c(p)`` (id = position in classes + 1);
* confidence = ``(s1 − s2) / max(s1, ε)`` with ``s1 ≥ s2`` the two best class scores (one class: ``s2 = 0``);
* pixels whose ray hits nothing (accumulation below :data:`MIN_ACCUMULATION`) are unlabelled (0).

The command ``jacobinerf-label`` and the viewer share these functions.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Literal, Optional, Sequence, Tuple

import torch
from torch import Tensor

from jacobinerf_ns.clicks import ClickSet, PixelClick, RayClick, SceneFingerprint, require_clicks, scene_fingerprint
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.propagation.probe import JACOBIAN_NORM, RESPONSES, Probe, ray_jacobians, render_responses

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import RayBundle
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

    from jacobinerf_ns.model import JacobiNerfModel

MIN_ACCUMULATION = 0.5
"""A ray that accumulates less opacity than this hits no surface (a click is skipped, a pixel left unlabelled)."""
CONFIDENCE_EPSILON = 1e-12
RAY_PIXEL_AREA = 1e-6
"""Pixel area given to ray clicks (nerfacto's field does not use it; the viewer's clicks use the same)."""


@dataclass(frozen=True)
class Frame:
    """One dataset image and its camera (nerfstudio's normalised frame)."""

    split: str
    index: int
    """Index within its split."""
    camera: Cameras
    image: Path
    """The image file the dataset loads."""
    name: str
    """``image`` relative to the data folder (POSIX), as clicks name it."""

    @property
    def stem(self) -> str:
        return Path(self.name).stem


@dataclass(frozen=True)
class Scene:
    """The frames of a run's dataset (train, then eval) and the normalisation nerfstudio applied to them."""

    data_dir: Path
    frames: Tuple[Frame, ...]
    outputs: DataparserOutputs
    """Dataparser outputs of one split: every split shares the normalisation (``dataparser_transform``/``scale``)."""

    def original_poses(self) -> Tensor:
        """``(N, 3, 4)`` OpenGL camera-to-world poses of the frames in the original frame."""
        poses = torch.cat([frame.camera.camera_to_worlds for frame in self.frames])
        return self.outputs.transform_poses_to_original_space(poses, camera_convention="opengl")

    def fingerprint(self) -> SceneFingerprint:
        return scene_fingerprint([frame.name for frame in self.frames], self.original_poses())

    def to_normalised(self, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        """Rays ``(K, 3)`` from the original frame to nerfstudio's: ``o' = s (A o + t)``, ``d' = A d / |A d|``.

        ``[A | t]`` = ``dataparser_transform`` and ``s`` = ``dataparser_scale``, the inverse of nerfstudio's
        ``transform_poses_to_original_space``.
        """
        transform = self.outputs.dataparser_transform.to(origins)
        linear, translation = transform[:, :3], transform[:, 3]
        scale = float(self.outputs.dataparser_scale)
        return (
            scale * (origins @ linear.T + translation),
            torch.nn.functional.normalize(directions @ linear.T, dim=-1),
        )

    def ray_click(self, origin: Tensor, direction: Tensor, label: str) -> RayClick:
        """A ray of nerfstudio's frame (a viewer click) as a :class:`RayClick` in the original frame: the inverse of
        :meth:`to_normalised`, ``o = A⁻¹ (o' / s − t)``, ``d = A⁻¹ d' / |A⁻¹ d'|``."""
        transform = self.outputs.dataparser_transform.double()
        inverse = torch.linalg.inv(transform[:, :3])
        scale = float(self.outputs.dataparser_scale)
        original = (origin.double().reshape(3) / scale - transform[:, 3]) @ inverse.T
        towards = torch.nn.functional.normalize(direction.double().reshape(3) @ inverse.T, dim=0)
        return RayClick(label=label, origin=_floats(original), direction=_floats(towards))

    def frame_of(self, image: str, where: str) -> Frame:
        """The frame a click's ``image`` names: its path relative to the data folder (or an absolute path), else its
        file name when unique."""
        target = (self.data_dir / image).resolve()
        for frame in self.frames:
            if frame.image.resolve() == target:
                return frame
        name = Path(image.replace("\\", "/")).name
        named = [frame for frame in self.frames if Path(frame.name).name == name]
        if len(named) == 1:
            return named[0]
        if named:
            listed = ", ".join(frame.name for frame in named)
            raise JacobiNerfError(f"{where}: image {image!r} is ambiguous ({listed}): give its path as listed.")
        names = [frame.name for frame in self.frames]
        close = difflib.get_close_matches(image, names, n=3, cutoff=0.5) or names[:3]
        raise JacobiNerfError(
            f"{where}: the dataset in {self.data_dir} has no image {image!r} ({len(names)} images, e.g. "
            f"{', '.join(close)}): name an image by its path relative to the data folder, or by its file name."
        )


def _floats(vector: Tensor) -> Tuple[float, float, float]:
    return tuple(float(v) for v in vector)  # type: ignore[return-value]


def scene_from_outputs(data_dir: Path, splits: Dict[str, DataparserOutputs]) -> Scene:
    """A :class:`Scene` of the frames of ``splits`` (an image listed in two splits counts once, in the first)."""
    data_dir = Path(data_dir)
    data_dir = data_dir.parent if data_dir.suffix == ".json" else data_dir
    frames: List[Frame] = []
    seen = set()
    for split, outputs in splits.items():
        for index, image in enumerate(outputs.image_filenames):
            image = Path(image)
            if image.resolve() in seen:
                continue
            seen.add(image.resolve())
            name = Path(os.path.relpath(image.resolve(), data_dir.resolve())).as_posix()
            frames.append(Frame(split, index, outputs.cameras[index : index + 1], image, name))
    return Scene(data_dir=data_dir, frames=tuple(frames), outputs=next(iter(splits.values())))


def dataset_scene(datamanager) -> Scene:
    """The :class:`Scene` of a loaded run's datamanager (training and eval frames)."""
    return scene_from_outputs(
        datamanager.dataparser.config.data,
        {"train": datamanager.train_dataparser_outputs, "eval": datamanager.eval_dataset._dataparser_outputs},
    )


@dataclass(frozen=True)
class ClickRays:
    """The rays of a click set's clicks in nerfstudio's normalised frame."""

    origins: Tensor
    directions: Tensor
    pixel_areas: Tensor
    names: Tuple[str, ...]
    """How messages name each click: ``clicks[3] ('chair' at images/frame_00012.png x 140.5 y 88)``."""

    def bundle(self) -> RayBundle:
        from nerfstudio.cameras.rays import RayBundle

        return RayBundle(
            origins=self.origins,
            directions=self.directions,
            pixel_area=self.pixel_areas,
            camera_indices=torch.zeros(len(self.origins), 1, dtype=torch.long),
        )


def pixel_click(frame: Frame, row: float, column: float, label: str) -> PixelClick:
    """The :class:`PixelClick` at continuous camera coordinates ``(row, column)`` of ``frame`` (pixel ``(y, x)``'s
    centre is ``(y + 0.5, x + 0.5)``), converted to the image file's resolution."""
    width, height = image_size(frame.image)
    camera = frame.camera
    return PixelClick(
        label=label,
        image=frame.name,
        x=column * width / float(camera.width),
        y=row * height / float(camera.height),
    )


def image_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` of an image file (its header only)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def click_rays(click_set: ClickSet, scene: Scene, source: str) -> ClickRays:
    """Pixel clicks → the ray through that continuous pixel of the frame's camera (coordinates scaled from the
    image file's resolution to the camera's); ray clicks → :meth:`Scene.to_normalised`. ``source`` names the set."""
    require_clicks(click_set, source)
    origins, directions, areas, names = [], [], [], []
    for index, click in enumerate(click_set.clicks):
        where = f"Clicks file {source}, clicks[{index}]"
        if isinstance(click, PixelClick):
            frame = scene.frame_of(click.image, where)
            named = scene.data_dir / click.image
            width, height = image_size(named if named.is_file() else frame.image)  # the file the pixels count in
            if not (click.x < width and click.y < height):
                raise JacobiNerfError(
                    f"{where}: (x {click.x}, y {click.y}) lies outside {click.image}, which is {width}×{height} "
                    "pixels: x, y are pixel coordinates at the image file's resolution (x < width, y < height)."
                )
            camera = frame.camera
            coords = torch.tensor([[click.y * float(camera.height) / height, click.x * float(camera.width) / width]])
            rays = camera.generate_rays(camera_indices=0, coords=coords)
            origins.append(rays.origins.reshape(1, 3))
            directions.append(rays.directions.reshape(1, 3))
            areas.append(rays.pixel_area.reshape(1, 1))
            names.append(f"clicks[{index}] ({click.label!r} at {click.image} x {click.x:g} y {click.y:g})")
        else:
            origin, direction = scene.to_normalised(
                torch.tensor([click.origin], dtype=torch.float64), torch.tensor([click.direction], dtype=torch.float64)
            )
            origins.append(origin)
            directions.append(direction)
            areas.append(torch.full((1, 1), RAY_PIXEL_AREA))
            names.append(f"clicks[{index}] ({click.label!r}, ray from {list(click.origin)})")
    return ClickRays(
        origins=torch.cat(origins).float(),
        directions=torch.cat(directions).float(),
        pixel_areas=torch.cat(areas).float(),
        names=tuple(names),
    )


def unit_perturbations(jacobians: Tensor) -> Tensor:
    """``J_k / ‖J_k‖`` for ``(K, ...)`` Jacobians: the directions labelling perturbs along, each by the same σ.

    The paper perturbs along ``σ J_k`` and relies on shaping to keep ``‖J_k‖ ≈ 1``; the norms that remain (0.87–1.09
    between the 10th and 90th percentile on office_0) then decide which click wins wherever cosines are close, and most
    clicks win no pixel at all. With unit perturbations a pixel takes the class of the click it is most like:
    ``bench/clicks_to_quality.py`` measures the gain (docs/clicks_to_quality_*.md)."""
    norms = jacobians.flatten(1).norm(dim=-1).clamp_min(CONFIDENCE_EPSILON)
    return jacobians / norms.view(-1, *([1] * (jacobians.dim() - 1)))


@dataclass(frozen=True)
class ResolvedClicks:
    """The clicks that hit a surface of the run: their Jacobians and classes; the others, and why."""

    jacobians: Tensor
    """``(K, 3, F[+1])``."""
    class_ids: Tuple[int, ...]
    """Class id (position in classes + 1) of each kept click."""
    num_classes: int
    skipped: Tuple[str, ...]
    """One warning per click that hit nothing."""

    def probe(self, sigma: float, mode: Literal["linear", "exact"], dismissed: Optional[Tensor] = None) -> Probe:
        """The clicks as one probe of :func:`unit_perturbations`; ``dismissed`` ``(D, 3, F[+1])`` Jacobians follow
        them as further sources."""
        sources = self.jacobians if dismissed is None else torch.cat([self.jacobians, dismissed.to(self.jacobians)])
        return Probe(sources=unit_perturbations(sources), sigma=sigma, mode=mode)


def resolve_clicks(model: JacobiNerfModel, click_set: ClickSet, scene: Scene, source: str) -> ResolvedClicks:
    """Jacobians of the clicks' rays on ``model`` (eval mode); clicks whose ray hits nothing are skipped."""
    rays = click_rays(click_set, scene, source)
    bundle = rays.bundle()
    chunk = model.config.eval_num_rays_per_chunk
    jacobians, accumulations = [], []
    for start in range(0, len(bundle), chunk):
        jacobian, outputs, _ = ray_jacobians(model, bundle[start : start + chunk])
        jacobians.append(jacobian.cpu())
        accumulations.append(outputs["accumulation"].reshape(-1).cpu())
    return keep_hits(click_set, rays.names, torch.cat(jacobians), torch.cat(accumulations), source)


def keep_hits(
    click_set: ClickSet, names: Sequence[str], jacobians: Tensor, accumulation: Tensor, source: str
) -> ResolvedClicks:
    """The clicks whose ray accumulates at least :data:`MIN_ACCUMULATION`, a warning naming each other one, and an
    error when none is left."""
    hits = accumulation >= MIN_ACCUMULATION
    skipped = tuple(
        f"{name} hits nothing in this run (opacity {float(opacity):.2f} < {MIN_ACCUMULATION}): skipped."
        for name, opacity, hit in zip(names, accumulation, hits)
        if not hit
    )
    if not hits.any():
        raise JacobiNerfError(
            f"None of the {len(hits)} clicks of {source} hits a surface of this run:\n  "
            + "\n  ".join(skipped)
            + "\nClick on objects of the scene (pixel clicks on images, or rays in the frame of transforms.json)."
        )
    class_ids = click_set.class_ids()
    return ResolvedClicks(
        jacobians=jacobians[hits],
        class_ids=tuple(class_ids[i] for i in torch.nonzero(hits).flatten().tolist()),
        num_classes=len(click_set.classes),
        skipped=skipped,
    )


def class_scores(responses: Tensor, class_ids: Sequence[int], num_classes: int) -> Tensor:
    """``(..., K)`` responses → ``(..., C)`` scores, ``s_c = max`` over the clicks of class ``c`` (0 without any)."""
    index = torch.as_tensor(list(class_ids), device=responses.device) - 1
    scores = torch.zeros(*responses.shape[:-1], num_classes, dtype=responses.dtype, device=responses.device)
    return scores.scatter_reduce(-1, index.expand_as(responses), responses, reduce="amax")


def confidence(scores: Tensor) -> Tensor:
    """``(s1 − s2) / max(s1, ε)`` of the two best class scores ``(..., C) → (...)`` (one class: ``s2 = 0``)."""
    if scores.shape[-1] == 1:
        best, second = scores[..., 0], torch.zeros_like(scores[..., 0])
    else:
        top = scores.topk(2, dim=-1).values
        best, second = top[..., 0], top[..., 1]
    return (best - second) / best.clamp_min(CONFIDENCE_EPSILON)


def explained(responses: Tensor, click_norms: Tensor, pixel_norms: Tensor, sigma: float) -> Tensor:
    """How well the clicks explain each pixel: the best ``|cos|`` between its Jacobian and a click's,
    ``max_k R_k / (σ ‖J_k‖ ‖J_p‖)`` for linear responses ``R_k = σ |⟨J_p, J_k⟩|`` (1: like a clicked pixel, 0: like
    none); ``(..., K)``, ``(K,)``, ``(...)`` → ``(...)``.

    *Suggest next click* goes where this is lowest. The confidence margin is a worse guide: on the sample scene
    (``bench/clicks_to_quality.py``) it keeps pointing at an entity whose Jacobians stay mixed with another's, and
    clicks placed by it do worse than random ones, while clicks placed where no click explains the pixel do better.
    """
    scale = sigma * click_norms.clamp_min(CONFIDENCE_EPSILON) * pixel_norms[..., None].clamp_min(CONFIDENCE_EPSILON)
    return (responses / scale).amax(dim=-1).clamp(0.0, 1.0)


def label_ids(scores: Tensor, margin: Tensor, min_confidence: float = 0.0, hit: Optional[Tensor] = None) -> Tensor:
    """Class id of the best score (1-based); 0 where ``margin < min_confidence`` or where ``hit`` is false."""
    ids = scores.argmax(dim=-1) + 1
    keep = margin >= min_confidence
    if hit is not None:
        keep &= hit
    return torch.where(keep, ids, torch.zeros_like(ids))


@dataclass(frozen=True)
class FrameLabels:
    """A frame labelled by one render: ``(H, W)`` ids, confidence and how well the clicks explain each pixel
    (:func:`explained`), and the render's depth and accumulation."""

    ids: Tensor
    confidence: Tensor
    explained: Tensor
    depth: Tensor
    accumulation: Tensor

    @property
    def hit(self) -> Tensor:
        """``(H, W)`` pixels whose ray hits a surface."""
        return self.accumulation >= MIN_ACCUMULATION


def label_frame(
    model: JacobiNerfModel,
    camera: Cameras,
    clicks: ResolvedClicks,
    space: Literal["2d", "3d"] = "3d",
    mode: Literal["linear", "exact"] = "linear",
    sigma: float = 0.1,
    min_confidence: float = 0.0,
    dismissed: Optional[Tensor] = None,
) -> FrameLabels:
    """Labels of one camera from one render with all clicks as one probe.

    ``dismissed`` ``(D, 3, F[+1])``: Jacobians of suggested pixels the user had nothing to label at; they count as
    explaining their look-alikes (so suggestions move on) but label nothing."""
    probe = clicks.probe(sigma, mode, dismissed)
    outputs = render_responses(model, camera, probe)
    responses = outputs[RESPONSES[space]].cpu()
    scores = class_scores(responses[..., : len(clicks.jacobians)], clicks.class_ids, clicks.num_classes)
    accumulation = outputs["accumulation"].cpu()[..., 0]
    hit = accumulation >= MIN_ACCUMULATION
    margin = torch.where(hit, confidence(scores), torch.zeros_like(accumulation))
    source_norms = probe.sources.flatten(1).norm(dim=-1).cpu()
    how_well = explained(responses, source_norms, outputs[JACOBIAN_NORM].cpu()[..., 0], sigma)
    return FrameLabels(
        ids=label_ids(scores, margin, min_confidence, hit),
        confidence=margin,
        explained=torch.where(hit, how_well, torch.ones_like(how_well)),
        depth=outputs["depth"].cpu()[..., 0],
        accumulation=accumulation,
    )


SUGGESTION_WINDOW = 5
"""Side (pixels) of the box over which *Suggest next click* averages its guide: a region, not one noisy pixel."""


def weakest_region(guide: Tensor, hit: Tensor, window: int = SUGGESTION_WINDOW) -> Optional[Tuple[int, int]]:
    """``(y, x)``: the centre of the ``window × window`` box of lowest mean ``guide`` (in [0, 1]; *Suggest next click*
    uses :func:`explained`), among pixels whose ray hits a surface (``None`` when none does); ``(H, W)`` inputs.

    Centres keep ``window`` pixels from the border where the view is large enough: a suggestion on the frame's edge is
    half outside the view, and its marker with it."""
    if not hit.any():
        return None
    known = torch.where(hit, guide.float(), torch.ones_like(guide, dtype=torch.float32))
    pooled = torch.nn.functional.avg_pool2d(
        known[None, None], window, stride=1, padding=window // 2, count_include_pad=False
    )[0, 0]
    inner = torch.zeros_like(hit)
    inner[window:-window, window:-window] = True
    height, width = hit.shape
    large = height > 4 * window and width > 4 * window
    candidates = hit & inner if large and (hit & inner).any() else hit
    pooled = torch.where(candidates, pooled, torch.full_like(pooled, float("inf")))
    index = int(pooled.argmin())
    return index // pooled.shape[1], index % pooled.shape[1]


def mean_over_hits(values: Tensor, hit: Tensor) -> float:
    """Mean of ``values`` over the pixels whose ray hits a surface (1 when none does: nothing to label there)."""
    return float(values[hit].mean()) if hit.any() else 1.0
