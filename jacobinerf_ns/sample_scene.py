"""Embedded demo scene: a small labelled multi-view dataset rendered procedurally.

A closed box room (floor, walls, ceiling) with two balls, two boxes and a vase
standing on the floor is ray-traced analytically with numpy and written in the
nerfstudio data layout used by the project's labelled datasets. With
``open_background`` the walls and ceiling go and the floor is a square patch
around the objects: behind them is open sky (depth 0 = no surface, labels void),
the case where a field grows floaters and labels what is not there::

    transforms.json   OPENCV pinhole (zero distortion), OpenGL camera-to-world poses
    images/           frame_XXXXX.png  RGB uint8 (2x2 supersampled)
    depth/            frame_XXXXX.png  uint16 z-depth in millimetres
    semantics/        frame_XXXXX.png  uint8 class index (0 = void)
    instances/        frame_XXXXX.png  uint8 instance index (0 = void)
    classes.json      class and instance tables

World units are metres with z up. Every surface has a procedural two-tone
checker texture and Lambertian shading from one directional light plus ambient
light. Depth and labels come from the ray through each pixel centre, which is
at (x + 0.5, y + 0.5) in pixel coordinates (nerfstudio convention).
"""

import json
from pathlib import Path

import numpy as np

from jacobinerf_ns import files
from jacobinerf_ns.errors import JacobiNerfError

SEMANTIC_CLASSES = (  # (name, visualisation colour); index = position, 0 = void
    ("void", (0, 0, 0)),
    ("floor", (242, 0, 81)),
    ("wall", (31, 74, 178)),
    ("ceiling", (178, 97, 0)),
    ("ball", (141, 242, 0)),
    ("box", (42, 242, 209)),
    ("vase", (124, 85, 242)),
)
INSTANCES = (  # (name, class name, base colour, checker frequency); index = position + 1
    ("floor", "floor", (150, 115, 80), 2.0),
    ("walls", "wall", (185, 180, 165), 3.0),
    ("ceiling", "ceiling", (215, 215, 225), 1.5),
    ("ball_red", "ball", (205, 55, 45), 6.0),
    ("ball_blue", "ball", (45, 85, 205), 10.0),
    ("box_green", "box", (65, 165, 75), 5.0),
    ("box_yellow", "box", (215, 180, 45), 8.0),
    ("vase", "vase", (150, 65, 165), 7.0),
)
ROOM_MIN = np.array([-2.4, -2.2, 0.0])
ROOM_MAX = np.array([2.4, 2.2, 2.6])
LOOK_AT = np.array([0.0, 0.0, 0.3])
HORIZONTAL_FOV_DEGREES = 70.0
OPEN_FLOOR_HALF_SIZE = 1.2
"""Half the side of the floor patch of an open-background scene (metres)."""
SKY_COLOURS = (np.array([200.0, 215.0, 235.0]), np.array([120.0, 160.0, 215.0]))
"""Open background: the sky's colour at the horizon and straight up (linear in the ray's elevation)."""
LIGHT_DIRECTION = np.array([0.45, 0.3, 0.85]) / np.linalg.norm([0.45, 0.3, 0.85])  # towards the light
AMBIENT = 0.4
SUBPIXEL_OFFSETS = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))
HIT_EPSILON = 1e-6


def _instance_index(name: str) -> int:
    return 1 + [instance[0] for instance in INSTANCES].index(name)


def _planar_checker(points: np.ndarray, normal_axis: np.ndarray, frequency: float) -> np.ndarray:
    """0/1 checker in the two world axes orthogonal to each point's (axis-aligned) face normal."""
    cells = np.floor(points * frequency).astype(np.int64)
    in_plane = np.arange(3)[None, :] != normal_axis[:, None]
    return (cells * in_plane).sum(axis=1) % 2


class InteriorPlane:
    """One face of the room, seen from inside; `axis`/`offset` give the plane, normal points inwards."""

    def __init__(self, instance: str, axis: int, offset: float, inward_sign: float, half_size: float = np.inf) -> None:
        self.instance = _instance_index(instance)
        self.axis, self.offset, self.inward_sign = axis, offset, inward_sign
        self.half_size = half_size
        """The face ends where a coordinate in its plane leaves ``[-half_size, half_size]`` (default: unbounded)."""

    def intersect(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        along_axis = directions[:, self.axis]
        facing = along_axis * self.inward_sign < -1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.offset - origins[:, self.axis]) / along_axis
            points = origins + np.where(np.isfinite(t), t, 0.0)[:, None] * directions
        in_plane = np.arange(3) != self.axis
        inside = (np.abs(points[:, in_plane]) <= self.half_size).all(axis=1)
        return np.where(facing & (t > HIT_EPSILON) & inside, t, np.inf)

    def surface(self, points: np.ndarray, frequency: float) -> tuple[np.ndarray, np.ndarray]:
        normals = np.zeros_like(points)
        normals[:, self.axis] = self.inward_sign
        return normals, _planar_checker(points, np.full(len(points), self.axis), frequency)


class Sphere:
    def __init__(self, instance: str, centre: tuple[float, float, float], radius: float) -> None:
        self.instance = _instance_index(instance)
        self.centre, self.radius = np.array(centre), radius

    def intersect(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        offset = origins - self.centre
        a = (directions * directions).sum(axis=1)
        half_b = (directions * offset).sum(axis=1)
        c = (offset * offset).sum(axis=1) - self.radius**2
        discriminant = half_b**2 - a * c
        t = (-half_b - np.sqrt(np.maximum(discriminant, 0.0))) / a
        return np.where((discriminant >= 0) & (t > HIT_EPSILON), t, np.inf)

    def surface(self, points: np.ndarray, frequency: float) -> tuple[np.ndarray, np.ndarray]:
        """Checker in longitude/latitude; `frequency` (even) cells around the equator."""
        normals = (points - self.centre) / self.radius
        longitude = np.arctan2(normals[:, 1], normals[:, 0]) / (2 * np.pi)
        colatitude = np.arccos(np.clip(normals[:, 2], -1.0, 1.0)) / np.pi
        cells = np.floor(longitude * frequency) + np.floor(colatitude * frequency / 2)
        return normals, cells.astype(np.int64) % 2


class Box:
    """Axis-aligned box seen from outside."""

    def __init__(self, instance: str, lower: tuple[float, float, float], upper: tuple[float, float, float]) -> None:
        self.instance = _instance_index(instance)
        self.lower, self.upper = np.array(lower), np.array(upper)

    def intersect(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        safe_directions = np.where(np.abs(directions) < 1e-12, 1e-12, directions)
        t_lower = (self.lower - origins) / safe_directions
        t_upper = (self.upper - origins) / safe_directions
        t_enter = np.minimum(t_lower, t_upper).max(axis=1)
        t_exit = np.maximum(t_lower, t_upper).min(axis=1)
        return np.where((t_enter <= t_exit) & (t_enter > HIT_EPSILON), t_enter, np.inf)

    def surface(self, points: np.ndarray, frequency: float) -> tuple[np.ndarray, np.ndarray]:
        distance_to_faces = np.stack([np.abs(points - self.lower), np.abs(points - self.upper)])  # (2, N, 3)
        side, normal_axis = np.divmod(distance_to_faces.transpose(1, 0, 2).reshape(len(points), 6).argmin(axis=1), 3)
        normals = np.zeros_like(points)
        normals[np.arange(len(points)), normal_axis] = np.where(side == 1, 1.0, -1.0)
        return normals, _planar_checker(points, normal_axis, frequency)


class VerticalCylinder:
    """Closed cylinder standing on the floor (z = 0) with its axis at `axis_xy`."""

    def __init__(self, instance: str, axis_xy: tuple[float, float], radius: float, height: float) -> None:
        self.instance = _instance_index(instance)
        self.axis_xy, self.radius, self.height = np.array(axis_xy), radius, height

    def intersect(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        offset = origins[:, :2] - self.axis_xy
        horizontal = directions[:, :2]
        a = (horizontal * horizontal).sum(axis=1)
        half_b = (horizontal * offset).sum(axis=1)
        c = (offset * offset).sum(axis=1) - self.radius**2
        discriminant = half_b**2 - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-half_b - np.sqrt(np.maximum(discriminant, 0.0))) / a
            z_side = origins[:, 2] + t_side * directions[:, 2]
            side_hit = (
                (a > 1e-12) & (discriminant >= 0) & (t_side > HIT_EPSILON) & (z_side >= 0) & (z_side <= self.height)
            )
            t_top = (self.height - origins[:, 2]) / directions[:, 2]
            top_xy = offset + t_top[:, None] * horizontal
            top_hit = (directions[:, 2] < 0) & (t_top > HIT_EPSILON) & ((top_xy * top_xy).sum(axis=1) <= self.radius**2)
        return np.minimum(np.where(side_hit, t_side, np.inf), np.where(top_hit, t_top, np.inf))

    def surface(self, points: np.ndarray, frequency: float) -> tuple[np.ndarray, np.ndarray]:
        """Side: checker in (angle, height); top: checker in x/y; `frequency` cells per metre."""
        radial = points[:, :2] - self.axis_xy
        on_top = points[:, 2] > self.height - 1e-6
        normals = np.zeros_like(points)
        normals[:, :2] = np.where(on_top[:, None], 0.0, radial / self.radius)
        normals[:, 2] = on_top
        around = np.arctan2(radial[:, 1], radial[:, 0]) * self.radius * frequency
        side_cells = np.floor(around) + np.floor(points[:, 2] * frequency)
        top_pattern = _planar_checker(points, np.full(len(points), 2), frequency)
        return normals, np.where(on_top, top_pattern, side_cells.astype(np.int64) % 2)


OBJECTS = (
    Sphere("ball_red", (-0.55, 0.45, 0.32), 0.32),
    Sphere("ball_blue", (0.6, -0.55, 0.22), 0.22),
    Box("box_green", (0.15, 0.2, 0.0), (0.75, 0.7, 0.55)),
    Box("box_yellow", (-0.85, -0.8, 0.0), (-0.35, -0.3, 0.35)),
    VerticalCylinder("vase", (0.0, -0.05), 0.14, 0.75),
)
PRIMITIVES = (
    InteriorPlane("floor", 2, ROOM_MIN[2], 1.0),
    InteriorPlane("ceiling", 2, ROOM_MAX[2], -1.0),
    InteriorPlane("walls", 0, ROOM_MIN[0], 1.0),
    InteriorPlane("walls", 0, ROOM_MAX[0], -1.0),
    InteriorPlane("walls", 1, ROOM_MIN[1], 1.0),
    InteriorPlane("walls", 1, ROOM_MAX[1], -1.0),
    *OBJECTS,
)
OPEN_PRIMITIVES = (InteriorPlane("floor", 2, ROOM_MIN[2], 1.0, OPEN_FLOOR_HALF_SIZE), *OBJECTS)
"""The open-background scene: the objects on a floor patch, nothing else."""


def _trace(origins: np.ndarray, directions: np.ndarray, primitives) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit distance (in units of |direction|; inf where the ray hits nothing) and primitive index per ray."""
    distances = np.stack([primitive.intersect(origins, directions) for primitive in primitives])
    nearest = distances.argmin(axis=0)
    return distances[nearest, np.arange(len(origins))], nearest


def _sky(directions: np.ndarray) -> np.ndarray:
    """The open background's colour along ``directions`` (:data:`SKY_COLOURS`)."""
    elevation = np.clip(directions[:, 2] / np.linalg.norm(directions, axis=1), 0.0, 1.0)[:, None]
    return (1.0 - elevation) * SKY_COLOURS[0] + elevation * SKY_COLOURS[1]


def _shade(points: np.ndarray, primitive_indices: np.ndarray, primitives) -> np.ndarray:
    """Textured Lambertian colour in [0, 255] for surface points of the given primitives."""
    colours = np.zeros_like(points)
    for primitive_index, primitive in enumerate(primitives):
        hit = primitive_indices == primitive_index
        _, _, base_colour, frequency = INSTANCES[primitive.instance - 1]
        normals, pattern = primitive.surface(points[hit], frequency)
        tone = np.where(pattern == 1, 0.75, 1.15)[:, None] * np.array(base_colour)
        lambert = np.maximum(normals @ LIGHT_DIRECTION, 0.0)[:, None]
        colours[hit] = tone * (AMBIENT + (1.0 - AMBIENT) * lambert)
    return np.clip(colours, 0.0, 255.0)


def _camera_to_world_poses(num_views: int, seed: int) -> list[np.ndarray]:
    """OpenGL camera-to-world matrices on a jittered ring around the objects, looking at LOOK_AT."""
    rng = np.random.default_rng(seed)
    azimuths = (
        rng.uniform(0, 2 * np.pi) + 2 * np.pi * (np.arange(num_views) + rng.uniform(-0.2, 0.2, num_views)) / num_views
    )
    radii = 1.75 + rng.uniform(-0.1, 0.1, num_views)
    heights = 1.05 + 0.12 * np.sin(3 * azimuths) + rng.uniform(-0.05, 0.05, num_views)
    poses = []
    for azimuth, radius, height in zip(azimuths, radii, heights):
        eye = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), height])
        forward = (LOOK_AT - eye) / np.linalg.norm(LOOK_AT - eye)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([right, up, -forward], axis=1)
        pose[:3, 3] = eye
        poses.append(pose)
    return poses


def _pixel_rays(
    pose: np.ndarray, focal: float, width: int, height: int, offset: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """World rays through pixel positions (x + offset_x, y + offset_y), directions scaled to unit z-depth."""
    pixel_x, pixel_y = np.meshgrid(np.arange(width) + offset[0], np.arange(height) + offset[1])
    camera_directions = np.stack(
        [(pixel_x - width / 2) / focal, -(pixel_y - height / 2) / focal, -np.ones_like(pixel_x)], axis=-1
    ).reshape(-1, 3)
    directions = camera_directions @ pose[:3, :3].T
    return np.broadcast_to(pose[:3, 3], directions.shape), directions


def _render_view(pose: np.ndarray, focal: float, width: int, height: int, primitives) -> dict[str, np.ndarray]:
    """RGB (supersampled), z-depth in mm, semantic and instance maps of one view (a ray that hits nothing: the sky,
    depth 0, void)."""
    rgb = np.zeros((width * height, 3))
    for offset in SUBPIXEL_OFFSETS:
        origins, directions = _pixel_rays(pose, focal, width, height, offset)
        depth, primitive_indices = _trace(origins, directions, primitives)
        hit = np.isfinite(depth)
        colour = _sky(directions)
        colour[hit] = _shade(origins[hit] + depth[hit, None] * directions[hit], primitive_indices[hit], primitives)
        rgb += colour / len(SUBPIXEL_OFFSETS)
    depth, primitive_indices = _trace(*_pixel_rays(pose, focal, width, height, (0.5, 0.5)), primitives)
    hit = np.isfinite(depth)
    instance_of_primitive = np.array([primitive.instance for primitive in primitives])
    class_of_instance = np.array([0] + [[c[0] for c in SEMANTIC_CLASSES].index(i[1]) for i in INSTANCES])
    instances = np.where(hit, instance_of_primitive[primitive_indices], 0)
    return {
        "images": np.round(rgb).astype(np.uint8).reshape(height, width, 3),
        "depth": np.round(np.where(hit, depth, 0.0) * 1000.0).astype(np.uint16).reshape(height, width),
        "semantics": class_of_instance[instances].astype(np.uint8).reshape(height, width),
        "instances": instances.astype(np.uint8).reshape(height, width),
    }


def _classes_table() -> dict:
    class_names = [name for name, _ in SEMANTIC_CLASSES]
    return {
        "semantic_classes": [
            {"index": index, "name": name, "color": list(colour)}
            for index, (name, colour) in enumerate(SEMANTIC_CLASSES)
        ],
        "instances": [{"index": 0, "class_index": 0, "name": "void"}]
        + [
            {"index": index, "class_index": class_names.index(class_name), "name": name}
            for index, (name, class_name, _, _) in enumerate(INSTANCES, start=1)
        ],
    }


def _stored_arguments(transforms_path: Path) -> dict | None:
    """The "sample_scene" marker of a transforms.json, or None if absent/unreadable."""
    try:
        transforms = json.loads(transforms_path.read_text())
    except (OSError, ValueError):
        return None
    marker = transforms.get("sample_scene") if isinstance(transforms, dict) else None
    return marker if isinstance(marker, dict) else None


def make_sample_scene(
    out_dir: Path, num_views: int = 24, width: int = 64, height: int = 48, seed: int = 0, open_background: bool = False
) -> Path:
    """Render the demo scene into `out_dir` (created if needed) and return `out_dir` (`open_background`: the objects
    on a floor patch under open sky, no room around them).

    Deterministic in its arguments. If `out_dir` already holds this scene rendered with
    the same arguments, nothing is re-rendered; a scene written by this function with
    other arguments is replaced. Any other non-empty folder raises ValueError. The scene
    is rendered into a temporary folder beside `out_dir` that replaces it when complete
    (`files.atomic_folder`): an interrupted render leaves `out_dir` as it was.
    """
    if num_views < 1 or width < 1 or height < 1:
        raise JacobiNerfError(f"num_views, width and height must be positive, got {num_views}, {width}, {height}")
    out_dir = Path(out_dir)
    arguments = {"num_views": num_views, "width": width, "height": height, "seed": seed}
    if open_background:  # only then, so that the rooms written before the option keep their marker
        arguments["open_background"] = True
    primitives = OPEN_PRIMITIVES if open_background else PRIMITIVES
    transforms_path = out_dir / "transforms.json"
    stored_arguments = _stored_arguments(transforms_path) if transforms_path.is_file() else None
    if stored_arguments == arguments:
        return out_dir
    if stored_arguments is None and out_dir.exists() and any(out_dir.iterdir()):
        raise JacobiNerfError(
            f"{out_dir} is not empty and holds no sample scene written by make_sample_scene; "
            "choose an empty (or not yet existing) folder"
        )
    focal = (width / 2) / np.tan(np.radians(HORIZONTAL_FOV_DEGREES) / 2)
    with files.atomic_folder(out_dir) as folder:
        frames = []
        for view_index, pose in enumerate(_camera_to_world_poses(num_views, seed)):
            file_name = f"frame_{view_index:05d}.png"
            for kind, array in _render_view(pose, focal, width, height, primitives).items():
                files.save_image(folder / kind / file_name, array)
            frames.append(
                {
                    "file_path": f"images/{file_name}",
                    "depth_file_path": f"depth/{file_name}",
                    "semantics_file_path": f"semantics/{file_name}",
                    "instance_file_path": f"instances/{file_name}",
                    "transform_matrix": pose.tolist(),
                }
            )
        files.write_json(folder / "classes.json", _classes_table())
        transforms = {
            "camera_model": "OPENCV",
            "fl_x": float(focal),
            "fl_y": float(focal),
            "cx": width / 2,
            "cy": height / 2,
            "w": width,
            "h": height,
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            "frames": frames,
            "sample_scene": arguments,
        }
        files.write_json(folder / "transforms.json", transforms)
    return out_dir


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write the procedurally generated labelled demo scene.")
    parser.add_argument("out_dir", type=Path, help="empty or not yet existing output folder")
    parser.add_argument("--num-views", type=int, default=24)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--open-background", action="store_true", help="objects on a floor patch under open sky")
    cli = parser.parse_args()
    print(make_sample_scene(cli.out_dir, cli.num_views, cli.width, cli.height, cli.seed, cli.open_background))
