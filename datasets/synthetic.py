"""Procedural indoor rooms, ray-cast exactly: RGB, NYU 13-class labels, metric depth, poses.

Each sample is a box room (textured walls, floor, ceiling) furnished with beds, sofas, tables,
chairs, cabinets, TVs, books and objects built from axis-aligned boxes, with windows and
pictures on the walls. Everything is a function of ``(seed, split, index)``, so samples are
deterministic at any resolution and cheap to generate in DataLoader workers.

Rendering is exact ray casting against axis-aligned boxes (slab test), limited for each box to
the screen rectangle its projected corners cover. Shading is Lambertian under one point light,
so a surface looks the same from every viewpoint; textures are procedural tiles in world units,
sampled trilinearly from their mip chain at the level of each pixel's footprint. Point-sampling
them instead aliases (a distant or slanted surface flickers from frame to frame), which makes
the photometric signal of self-supervised depth ambiguous.

World frame: y up, the room spans [0, W] × [0, H] × [0, D]. Cameras use the OpenCV convention.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dense.geometry import invert_rigid, look_rotation, nyu_intrinsics, rigid

NYU13_NAMES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)  # fmt: skip
BED, BOOKS, CEILING, CHAIR, FLOOR, FURNITURE, OBJECTS, PICTURE, SOFA, TABLE, TV, WALL, WINDOW = (
    range(13)
)  # class index = NYU 13-class id − 1
IGNORE_INDEX = 255
TEXTURE_SIZE = 64
SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


@dataclass
class SyntheticConfig:
    height: int = 240
    width: int = 320
    train_length: int = 10000  # samples per "epoch"; scenes never repeat within it
    val_length: int = 200
    test_length: int = 200
    seed: int = 0
    neighbours: bool = False  # also render the previous and next frames with their poses
    max_furniture: int = 7  # furniture groups placed per room (attempts; some may not fit)
    camera_speed: float = 0.25  # metres per frame along the trajectory (mean)
    frame_stride: int = 1  # frames between the target and each neighbour (motion scales)


@dataclass
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    label: int
    material: int


@dataclass
class Scene:
    size: tuple[float, float, float]  # W, H, D
    boxes: list[Box]
    room_materials: tuple[int, int, int]  # floor, ceiling, walls
    textures: MipTextures  # intensity patterns around 1, one per material
    colours: Tensor  # (M, 3) albedo
    texel_density: Tensor  # (M,) texels per metre
    light: Tensor  # (3,) point light position


class SyntheticRooms(torch.utils.data.Dataset):
    """Synthetic RGB-D rooms with NYU 13-class labels; see the module docstring."""

    Config = SyntheticConfig
    class_names = NYU13_NAMES
    ignore_index = IGNORE_INDEX

    def __init__(self, split: str, config: SyntheticConfig) -> None:
        from dense.errors import DenseError

        if split not in SPLIT_OFFSETS:
            raise DenseError(f"synthetic split '{split}' unknown (use train, val or test)")
        if config.height < 8 or config.width < 8:
            raise DenseError("synthetic images must be at least 8×8 pixels")
        if config.frame_stride < 1:
            raise DenseError("data.options.frame_stride must be at least 1")
        self.split = split
        self.config = config
        self.length = getattr(config, f"{split}_length")

    def __len__(self) -> int:
        return self.length

    def sample_seed(self, index: int) -> int:
        return (self.config.seed * 1_000_003 + SPLIT_OFFSETS[self.split]) * 2_654_435_761 + index

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = random.Random(self.sample_seed(index))
        scene = make_scene(rng, self.config.max_furniture)
        poses = camera_trajectory(
            rng, scene, self.config.camera_speed, self.config.frame_stride
        )  # prev, current, next
        h, w = self.config.height, self.config.width
        K = nyu_intrinsics(h, w)
        image, depth, labels = render(scene, poses[1], K, h, w)
        sample = {"image": image, "depth": depth, "segmentation": labels, "K": K}
        if self.config.neighbours:
            world_to_current = invert_rigid(poses[1])
            for name, pose in (("prev", poses[0]), ("next", poses[2])):
                sample[f"{name}_image"] = render(scene, pose, K, h, w)[0]
                # maps points from the current camera frame into the neighbour's frame
                sample[f"{name}_pose"] = invert_rigid(pose) @ invert_rigid(world_to_current)
        return sample


# --------------------------------------------------------------------------- scene layout


def make_scene(rng: random.Random, max_furniture: int) -> Scene:
    W, H, D = rng.uniform(3.5, 6.5), rng.uniform(2.4, 3.0), rng.uniform(3.5, 7.0)
    materials = Materials(rng)
    floor = materials.add(rng.choice(["planks", "tiles", "noise"]), "floor")
    ceiling = materials.add("noise", "ceiling")
    walls = materials.add(rng.choice(["noise", "stripes"]), "wall")
    layout = Layout(W, D)
    boxes: list[Box] = []
    builders = [bed, sofa, cabinet, cabinet, table_group, bookcase]
    for _ in range(max_furniture):
        builder = rng.choice(builders)
        boxes += builder(rng, layout, materials)
    boxes += wall_decals(rng, W, H, D, materials)
    return Scene(
        size=(W, H, D),
        boxes=boxes,
        room_materials=(floor, ceiling, walls),
        textures=MipTextures(torch.stack(materials.textures)),
        colours=torch.tensor(materials.colours, dtype=torch.float32),
        texel_density=torch.tensor(materials.density, dtype=torch.float32),
        light=torch.tensor([rng.uniform(0.3, 0.7) * W, H - 0.2, rng.uniform(0.3, 0.7) * D]),
    )


class Layout:
    """Floor footprints already taken, so furniture does not intersect."""

    def __init__(self, width: float, depth: float) -> None:
        self.width, self.depth = width, depth
        self.footprints: list[tuple[float, float, float, float]] = []  # x0, z0, x1, z1

    def fits(self, x0: float, z0: float, x1: float, z1: float, margin: float = 0.05) -> bool:
        if x0 < 0 or z0 < 0 or x1 > self.width or z1 > self.depth:
            return False
        return all(
            x1 + margin <= a0 or b1 + margin <= x0 or z1 + margin <= b0 or c1 + margin <= z0
            for a0, b0, b1, c1 in ((f[0], f[1], f[2], f[3]) for f in self.footprints)
        )

    def free(self, x: float, z: float, margin: float) -> bool:
        return self.fits(x - margin, z - margin, x + margin, z + margin, margin=0.0)


LocalBox = tuple[tuple[float, float, float, float, float, float], int]  # (x0,y0,z0,x1,y1,z1)


def place(parts: list[tuple[LocalBox, int]], origin: tuple[float, float], turns: int) -> list[Box]:
    """Map boxes from an object's frame (back at z=0) by ``turns`` quarter turns about y."""
    ox, oz = origin
    rotate = [
        lambda x, z: (x, z),
        lambda x, z: (-z, x),
        lambda x, z: (-x, -z),
        lambda x, z: (z, -x),
    ][turns % 4]
    boxes = []
    for ((x0, y0, z0, x1, y1, z1), label), material in parts:
        ax, az = rotate(x0, z0)
        bx, bz = rotate(x1, z1)
        lo = (ox + min(ax, bx), y0, oz + min(az, bz))
        hi = (ox + max(ax, bx), y1, oz + max(az, bz))
        boxes.append(Box(lo, hi, label, material))
    return boxes


def footprint(boxes: list[Box]) -> tuple[float, float, float, float]:
    return (
        min(b.lo[0] for b in boxes),
        min(b.lo[2] for b in boxes),
        max(b.hi[0] for b in boxes),
        max(b.hi[2] for b in boxes),
    )


def against_wall(
    rng: random.Random, layout: Layout, parts: list[tuple[LocalBox, int]], width: float
) -> list[Box]:
    """Place an object with its back to a random wall, if a free spot is found."""
    W, D = layout.width, layout.depth
    for _ in range(12):
        turns = rng.randrange(4)
        gap = 0.02
        along = (W if turns % 2 == 0 else D) - width
        if along <= 0:
            continue
        s = rng.uniform(0, along)
        origin = [(s, gap), (W - gap, s), (W - s, D - gap), (gap, D - s)][turns]
        boxes = place(parts, origin, turns)
        if layout.fits(*footprint(boxes)):
            layout.footprints.append(footprint(boxes))
            return boxes
    return []


def bed(rng: random.Random, layout: Layout, materials: Materials) -> list[Box]:
    w, d = rng.uniform(1.3, 2.0), rng.uniform(1.9, 2.2)
    frame, cover = materials.add("stripes", "wood"), materials.add("noise", "fabric")
    parts = [
        (((0, 0, 0, w, 0.3, d), BED), frame),
        (((0.02, 0.3, 0.05, w - 0.02, 0.55, d - 0.02), BED), cover),
        (((0, 0, 0, w, rng.uniform(0.9, 1.2), 0.08), BED), frame),
    ]
    return against_wall(rng, layout, parts, w)


def sofa(rng: random.Random, layout: Layout, materials: Materials) -> list[Box]:
    w, d = rng.uniform(1.5, 2.4), rng.uniform(0.8, 1.0)
    m = materials.add("noise", "fabric")
    parts = [
        (((0, 0, 0, w, 0.42, d), SOFA), m),
        (((0, 0, 0, w, 0.85, 0.22), SOFA), m),
        (((0, 0, 0, 0.18, 0.62, d), SOFA), m),
        (((w - 0.18, 0, 0, w, 0.62, d), SOFA), m),
    ]
    return against_wall(rng, layout, parts, w)


def cabinet(rng: random.Random, layout: Layout, materials: Materials) -> list[Box]:
    w, d, h = rng.uniform(0.6, 1.4), rng.uniform(0.4, 0.6), rng.uniform(0.5, 1.9)
    parts = [(((0, 0, 0, w, h, d), FURNITURE), materials.add("stripes", "wood"))]
    if h < 1.0 and rng.random() < 0.6:  # a TV on a low cabinet
        tw = min(w - 0.1, rng.uniform(0.6, 1.1))
        x0 = (w - tw) / 2
        parts.append(
            (((x0, h, 0.1, x0 + tw, h + tw * 0.58, 0.16), TV), materials.add("dark", "tv"))
        )
    elif h < 1.4:
        parts += books_row(rng, materials, w, h, d)
    return against_wall(rng, layout, parts, w)


def bookcase(rng: random.Random, layout: Layout, materials: Materials) -> list[Box]:
    """An open shelf: a back panel, shelf boards and rows of books standing on them."""
    w, d, h = rng.uniform(0.7, 1.2), 0.32, rng.uniform(1.4, 2.0)
    wood = materials.add("stripes", "wood")
    parts: list[tuple[LocalBox, int]] = [
        (((0, 0, 0, w, h, 0.03), FURNITURE), wood),
        (((0, 0, 0, 0.03, h, d), FURNITURE), wood),
        (((w - 0.03, 0, 0, w, h, d), FURNITURE), wood),
    ]
    shelves = rng.randint(3, 4)
    for k in range(shelves + 1):
        y = k * (h - 0.03) / shelves
        parts.append((((0, y, 0, w, y + 0.03, d), FURNITURE), wood))
        if k < shelves:
            parts += books_row(rng, materials, w, y + 0.03, d * 0.9, inset=0.04)
    return against_wall(rng, layout, parts, w)


def books_row(
    rng: random.Random, materials: Materials, w: float, y: float, d: float, inset: float = 0.1
) -> list[tuple[LocalBox, int]]:
    parts = []
    x = inset
    while x < w - inset - 0.05:
        bw = rng.uniform(0.03, 0.07)
        bh = rng.uniform(0.15, 0.28)
        parts.append(
            (((x, y, 0.04, x + bw, y + bh, d - 0.02), BOOKS), materials.pick("noise", "book"))
        )
        x += bw + rng.uniform(0.0, 0.02)
        if rng.random() < 0.1:
            x += rng.uniform(0.05, 0.2)
    return parts


def table_group(rng: random.Random, layout: Layout, materials: Materials) -> list[Box]:
    """A free-standing table with objects on top and chairs around it."""
    w, d = rng.uniform(0.9, 1.6), rng.uniform(0.7, 1.0)
    for _ in range(12):
        x0 = rng.uniform(0.6, layout.width - w - 0.6)
        z0 = rng.uniform(0.6, layout.depth - d - 0.6)
        if layout.fits(x0 - 0.55, z0 - 0.55, x0 + w + 0.55, z0 + d + 0.55):
            break
    else:
        return []
    layout.footprints.append((x0 - 0.5, z0 - 0.5, x0 + w + 0.5, z0 + d + 0.5))
    wood = materials.add("stripes", "wood")
    top = 0.74
    parts: list[tuple[LocalBox, int]] = [(((0, top, 0, w, top + 0.04, d), TABLE), wood)]
    leg = 0.06
    for lx, lz in ((0, 0), (w - leg, 0), (0, d - leg), (w - leg, d - leg)):
        parts.append((((lx, 0, lz, lx + leg, top, lz + leg), TABLE), wood))
    for _ in range(rng.randint(1, 3)):
        ow, od, oh = rng.uniform(0.08, 0.3), rng.uniform(0.08, 0.3), rng.uniform(0.05, 0.3)
        ox, oz = rng.uniform(0.05, w - ow - 0.05), rng.uniform(0.05, d - od - 0.05)
        material = materials.add(rng.choice(["noise", "dark", "stripes"]), "object")
        parts.append((((ox, top + 0.04, oz, ox + ow, top + 0.04 + oh, oz + od), OBJECTS), material))
    boxes = place(parts, (x0, z0), 0)
    chair_material = materials.add("stripes", "wood")
    sides = [  # origin (chair back corner) and quarter turns so the back faces away
        ((x0 + w / 2 - 0.23, z0 - 0.5), 0),
        ((x0 + w / 2 + 0.23, z0 + d + 0.5), 2),
        ((x0 - 0.5, z0 + d / 2 + 0.23), 3),
        ((x0 + w + 0.5, z0 + d / 2 - 0.23), 1),
    ]
    for origin, turns in rng.sample(sides, rng.randint(1, 4)):
        boxes += place(chair(0.46, chair_material), origin, turns)
    return boxes


def chair(size: float, material: int) -> list[tuple[LocalBox, int]]:
    leg, seat = 0.04, 0.45
    parts = [(((0, seat - 0.04, 0, size, seat, size), CHAIR), material)]
    for lx, lz in ((0, 0), (size - leg, 0), (0, size - leg), (size - leg, size - leg)):
        parts.append((((lx, 0, lz, lx + leg, seat - 0.04, lz + leg), CHAIR), material))
    parts.append((((0, seat, 0, size, seat + 0.45, 0.04), CHAIR), material))
    return parts


def wall_decals(
    rng: random.Random, W: float, H: float, D: float, materials: Materials
) -> list[Box]:
    """Windows and pictures: thin boxes on the walls (may be partly hidden by furniture)."""
    boxes = []
    for kind, label, count, depth in (("window", WINDOW, 2, 0.03), ("picture", PICTURE, 3, 0.02)):
        for _ in range(rng.randint(0, count)):
            wall = rng.randrange(4)
            length = W if wall % 2 == 0 else D
            if kind == "window":
                w, h, y0 = rng.uniform(0.8, 1.6), rng.uniform(0.9, 1.4), rng.uniform(0.8, 1.0)
            else:
                w, h, y0 = rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.7), rng.uniform(1.2, 1.6)
            if length - w - 0.2 <= 0.2:
                continue
            s = rng.uniform(0.2, length - w - 0.2)
            material = materials.add("window" if kind == "window" else "noise", kind)
            lo, hi = [
                ((s, y0, 0.0), (s + w, y0 + h, depth)),
                ((W - depth, y0, s), (W, y0 + h, s + w)),
                ((s, y0, D - depth), (s + w, y0 + h, D)),
                ((0.0, y0, s), (depth, y0 + h, s + w)),
            ][wall]
            boxes.append(Box(lo, hi, label, material))
    return boxes


class Materials:
    """Per-scene material table: albedo colour, a texture tile from the bank, texel density."""

    PALETTES = {
        "floor": ((0.55, 0.4, 0.25), (0.6, 0.6, 0.58), (0.35, 0.3, 0.28), (0.7, 0.55, 0.4)),
        "ceiling": ((0.9, 0.9, 0.88), (0.85, 0.85, 0.9)),
        "wall": ((0.85, 0.82, 0.75), (0.7, 0.78, 0.8), (0.82, 0.7, 0.65), (0.75, 0.8, 0.7)),
        "wood": ((0.5, 0.33, 0.18), (0.65, 0.5, 0.32), (0.35, 0.22, 0.12), (0.8, 0.75, 0.7)),
        "fabric": ((0.3, 0.35, 0.55), (0.55, 0.25, 0.25), (0.4, 0.5, 0.35), (0.6, 0.6, 0.6)),
        "tv": ((0.08, 0.08, 0.1),),
        "book": ((0.7, 0.15, 0.15), (0.15, 0.3, 0.6), (0.2, 0.5, 0.25), (0.8, 0.7, 0.3)),
        "object": ((0.8, 0.8, 0.75), (0.3, 0.6, 0.7), (0.75, 0.45, 0.2), (0.5, 0.5, 0.5)),
        "window": ((0.75, 0.85, 0.95),),
        "picture": ((0.7, 0.5, 0.3), (0.3, 0.5, 0.7), (0.6, 0.3, 0.5), (0.4, 0.6, 0.3)),
    }

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.textures: list[Tensor] = []  # mip-atlas rows
        self.colours: list[tuple[float, float, float]] = []
        self.density: list[float] = []
        self.shared: dict[str, list[int]] = {}

    def add(self, pattern: str, palette: str) -> int:
        base = self.rng.choice(self.PALETTES[palette])
        jitter = [min(1.0, max(0.02, c * self.rng.uniform(0.85, 1.15))) for c in base]
        self.colours.append(tuple(jitter))
        bank = texture_rows(pattern)
        self.textures.append(bank[self.rng.randrange(len(bank))])
        self.density.append(TEXTURE_SIZE / self.rng.uniform(0.6, 1.6))
        return len(self.textures) - 1

    def pick(self, pattern: str, palette: str, count: int = 4) -> int:
        """One of a few materials shared by many small parts (books, say)."""
        pool = self.shared.setdefault(palette, [])
        if len(pool) < count:
            pool.append(self.add(pattern, palette))
            return pool[-1]
        return self.rng.choice(pool)


@functools.cache
def texture_rows(pattern: str, size: int = 16) -> Tensor:
    """``size`` procedural tiles of one pattern as mip-atlas rows (``MipTextures.rows``),
    made once per process from a fixed seed."""
    generator = torch.Generator().manual_seed(sum(map(ord, pattern)))
    return MipTextures.rows(torch.stack([texture(pattern, generator) for _ in range(size)]))


def mip_sizes(size: int) -> list[int]:
    """Side of each mip level of a ``size`` tile, down to 1."""
    return [size >> level for level in range(int(math.log2(size)) + 1)]


def mip_columns(size: int) -> list[int]:
    """First column of each mip level in an atlas row, and the row's width at the end."""
    columns = [0]
    for s in mip_sizes(size):
        columns.append(columns[-1] + s + 1)
    return columns


def texture(pattern: str, generator: torch.Generator) -> Tensor:
    """A seamless (T, T) intensity tile with mean about 1."""
    T = TEXTURE_SIZE
    if pattern == "planks":
        planks = 4
        shade = torch.rand(planks, generator=generator).repeat_interleave(T // planks)
        grain = tileable_noise(generator, (4, 32))
        return 0.75 + 0.35 * shade[:, None] + 0.3 * grain
    if pattern == "tiles":
        n = 4
        shade = torch.rand(n, n, generator=generator).repeat_interleave(T // n, 0)
        shade = shade.repeat_interleave(T // n, 1)
        coords = torch.arange(T) % (T // n)
        grout = ((coords[:, None] < 2) | (coords[None, :] < 2)).float()
        return (0.85 + 0.3 * shade) * (1 - 0.5 * grout) + 0.1 * tileable_noise(generator, (16, 16))
    if pattern == "stripes":
        return 0.7 + 0.6 * tileable_noise(generator, (2, 24))
    if pattern == "dark":
        return 0.8 + 0.4 * tileable_noise(generator, (8, 8))
    if pattern == "window":
        frame = torch.zeros(T, T)
        frame[: T // 16], frame[:, : T // 16], frame[T // 2 : T // 2 + 2] = 1, 1, 1
        return 1.2 - 0.6 * frame + 0.15 * tileable_noise(generator, (4, 4))
    return 0.6 + 0.5 * tileable_noise(generator, (4, 4)) + 0.3 * tileable_noise(generator, (16, 16))


def tileable_noise(generator: torch.Generator, cells: tuple[int, int]) -> Tensor:
    """Smooth value noise in [0, 1] on a (T, T) tile that wraps around at its edges."""
    grid = torch.rand(1, 1, *cells, generator=generator)
    grid = F.pad(grid, (0, 1, 0, 1), mode="circular")
    size = (TEXTURE_SIZE + TEXTURE_SIZE // cells[0], TEXTURE_SIZE + TEXTURE_SIZE // cells[1])
    up = F.interpolate(grid, size=size, mode="bicubic", align_corners=True)
    return up[0, 0, :TEXTURE_SIZE, :TEXTURE_SIZE].clamp(0, 1)


def camera_trajectory(
    rng: random.Random, scene: Scene, speed: float, stride: int = 1
) -> list[Tensor]:
    """Camera-to-world poses (4×4) of the previous, current and next frames, ``stride`` frames
    apart on a straight walk in a random horizontal direction with a steady pan and tilt."""
    W, H, D = scene.size
    layout = Layout(W, D)
    layout.footprints = [(b.lo[0], b.lo[2], b.hi[0], b.hi[2]) for b in scene.boxes]
    for _ in range(100):
        wall = rng.randrange(4)
        offset = rng.uniform(0.4, 1.2)
        along = rng.uniform(0.15, 0.85)
        x, z, yaw = [
            (along * W, offset, 0.0),
            (W - offset, along * D, -math.pi / 2),
            (along * W, D - offset, math.pi),
            (offset, along * D, math.pi / 2),
        ][wall]
        step = speed * stride * rng.uniform(0.5, 1.5)
        heading = rng.uniform(-math.pi, math.pi)
        vx, vz = step * math.cos(heading), step * math.sin(heading)
        if all(layout.free(x + k * vx, z + k * vz, 0.3) for k in (-1, 0, 1)):
            break
    yaw += rng.uniform(-0.6, 0.6)
    pitch, y = rng.uniform(-0.35, 0.0), rng.uniform(1.1, 1.6)
    yaw_rate = stride * rng.uniform(-0.04, 0.04)
    pitch_rate = stride * rng.uniform(-0.015, 0.015)
    vy = stride * rng.uniform(-0.01, 0.01)
    return [
        rigid(
            look_rotation(yaw + k * yaw_rate, pitch + k * pitch_rate),
            torch.tensor([x + k * vx, y + k * vy, z + k * vz]),
        )
        for k in (-1, 0, 1)
    ]


# ------------------------------------------------------------------------------ rendering


def render(scene: Scene, pose: Tensor, K: Tensor, height: int, width: int) -> tuple[Tensor, ...]:
    """Ray-cast one view. Returns image (3,H,W) in [0,1], depth (1,H,W) in metres, labels (H,W)."""
    R, origin = pose[:3, :3], pose[:3, 3]
    fx, fy, cx, cy = K[0, 0].item(), K[1, 1].item(), K[0, 2].item(), K[1, 2].item()
    rays = camera_rays(fx, fy, cx, cy, height, width) @ R.T  # (H, W, 3) world, unit camera z
    inv = 1.0 / torch.where(rays.abs() < 1e-9, torch.full_like(rays, 1e-9), rays)

    # the room: leave the inside of [0, W] x [0, H] x [0, D]; object ids 0, 1, 2 are
    # floor, ceiling and walls, boxes follow
    size = torch.tensor(scene.size)
    # choose the wall by the sign of inv: a ray component of exactly 0 became +1e-9 above
    t_axes = torch.where(inv > 0, size - origin, -origin) * inv
    depth, axis = t_axes.min(dim=-1)
    obj = torch.where(axis == 1, (rays[..., 1] > 0).long(), 2)

    bounds = torch.tensor([[b.lo, b.hi] for b in scene.boxes]).reshape(-1, 2, 3)
    visible = visible_boxes(bounds, R.T, origin, K, height, width)
    relative = bounds - origin  # (N, 2, 3) box corners from the camera centre
    inv_planes = inv.permute(2, 0, 1).contiguous()  # (3, H, W): reductions over axes stay fast
    for indices, (rows, cols) in batch_small_boxes(visible):
        # slab test of K boxes against the rays of their common rectangle: (K, 3, h, w)
        r_inv = inv_planes[:, rows, cols]
        corners = relative.index_select(0, indices)[..., None, None]  # (K, 2, 3, 1, 1)
        lo, hi = corners[:, 0] * r_inv, corners[:, 1] * r_inv
        near, near_axis = torch.minimum(lo, hi).max(dim=1)
        far = torch.maximum(lo, hi).amin(dim=1)
        valid = (near <= far) & (near > 0)
        if len(indices) > 1:  # keep the closest of the K boxes per pixel
            near = torch.where(valid, near, torch.inf)
            near, nearest = near.min(dim=0)
            near_axis = near_axis.gather(0, nearest[None])[0]
            ids = indices[nearest] + 3
        else:
            near = torch.where(valid[0], near[0], torch.inf)
            near_axis, ids = near_axis[0], indices[0] + 3
        hit = near < depth[rows, cols]
        depth[rows, cols] = torch.where(hit, near, depth[rows, cols])
        axis[rows, cols] = torch.where(hit, near_axis, axis[rows, cols])
        obj[rows, cols] = torch.where(hit, ids, obj[rows, cols])

    labels = torch.tensor([FLOOR, CEILING, WALL] + [b.label for b in scene.boxes]).take(obj)
    material = torch.tensor(list(scene.room_materials) + [b.material for b in scene.boxes])
    material = material.take(obj)
    points = origin + rays * depth[..., None]  # (H, W, 3)
    image = shade(scene, points, rays, depth, math.sqrt(fx * fy), axis, material, labels)
    return image, depth[None], labels


@functools.lru_cache(maxsize=8)
def camera_rays(fx: float, fy: float, cx: float, cy: float, height: int, width: int) -> Tensor:
    """(H, W, 3) ray directions in the camera frame, scaled to unit z (cached: read-only)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], dim=-1)


NEAR = 1e-3  # near plane (camera z, metres) that box outlines are clipped to
CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
EDGES = torch.tensor([(c, c | bit) for bit in (4, 2, 1) for c in range(8) if not c & bit])


def visible_boxes(
    bounds: Tensor, world_to_cam: Tensor, origin: Tensor, K: Tensor, height: int, width: int
) -> list[tuple[int, tuple[slice, slice]]]:
    """Boxes in front of the camera with the pixel rectangle each can cover.

    A box's outline is clipped to the near plane first (its corners in front plus the points
    where its 12 edges cross the plane), so a box beside or behind the camera only claims the
    pixels it can reach rather than the whole image.
    """
    if len(bounds) == 0:
        return []
    corners = torch.stack([bounds[:, CORNERS[:, a], a] for a in range(3)], dim=-1)  # (N, 8, 3)
    cam = (corners - origin) @ world_to_cam.T
    p, q = cam[:, EDGES[:, 0]], cam[:, EDGES[:, 1]]  # (N, 12, 3) edge end points
    s = (NEAR - p[..., 2]) / (q[..., 2] - p[..., 2]).where(q[..., 2] != p[..., 2], 1.0)
    crossing = (s > 0) & (s < 1)
    points = torch.cat([cam, p + s[..., None] * (q - p)], dim=1)  # (N, 20, 3)
    keep = torch.cat([cam[..., 2] > NEAR, crossing], dim=1)
    z = points[..., 2].clamp(min=NEAR)
    u = K[0, 0] * points[..., 0] / z + K[0, 2]
    v = K[1, 1] * points[..., 1] / z + K[1, 2]
    inf = torch.tensor(torch.inf)
    c0 = u.where(keep, inf).amin(1).clamp(0, width).floor().long().tolist()
    c1 = (u.where(keep, -inf).amax(1).clamp(-1, width) + 1).ceil().long().tolist()
    r0 = v.where(keep, inf).amin(1).clamp(0, height).floor().long().tolist()
    r1 = (v.where(keep, -inf).amax(1).clamp(-1, height) + 1).ceil().long().tolist()
    return [
        (i, (slice(r0[i], min(r1[i], height)), slice(c0[i], min(c1[i], width))))
        for i in range(len(bounds))
        if c0[i] < min(c1[i], width) and r0[i] < min(r1[i], height)
    ]


def batch_small_boxes(
    visible: list[tuple[int, tuple[slice, slice]]], max_area: int = 1024
) -> list[tuple[Tensor, tuple[slice, slice]]]:
    """Merge runs of consecutive visible boxes (parts of one object: books on a shelf, legs)
    while their common rectangle stays under ``max_area`` pixels, to test them in one go."""
    groups: list[tuple[list[int], list[int]]] = []  # (box indices, [r0, r1, c0, c1])
    for index, (rows, cols) in visible:
        rect = [rows.start, rows.stop, cols.start, cols.stop]
        if groups:
            members, current = groups[-1]
            merged = [min(current[0], rect[0]), max(current[1], rect[1]),
                      min(current[2], rect[2]), max(current[3], rect[3])]  # fmt: skip
            if (merged[1] - merged[0]) * (merged[3] - merged[2]) <= max_area:
                members.append(index)
                groups[-1] = (members, merged)
                continue
        groups.append(([index], rect))
    return [
        (torch.tensor(members), (slice(r[0], r[1]), slice(r[2], r[3]))) for members, r in groups
    ]


def shade(
    scene: Scene,
    points: Tensor,
    rays: Tensor,
    depth: Tensor,
    focal: float,
    axis: Tensor,
    material: Tensor,
    labels: Tensor,
) -> Tensor:
    """Albedo from the filtered texture times view-independent Lambertian light."""
    # face coordinates: x-facing faces use (z, y), y-facing (x, z), z-facing (x, y)
    u = points.gather(-1, torch.where(axis == 0, 2, 0)[..., None])[..., 0]
    v = points.gather(-1, torch.where(axis == 1, 2, 1)[..., None])[..., 0]
    density = scene.texel_density.take(material)
    # pixel footprint in texels: its size across the ray at this distance, stretched by the
    # incidence angle (geometric mean of the two axes, so at most 4x for grazing views)
    length = rays.square().sum(-1).sqrt()
    facing = rays.gather(-1, axis[..., None])[..., 0]
    stretch = (length / facing.abs().clamp(min=1e-6)).clamp(max=16.0)
    footprint = density * depth * length / focal * stretch.sqrt()
    pattern = scene.textures.sample(material, u * density, v * density, footprint.log2())

    to_light = scene.light - points
    distance2 = to_light.square().sum(-1)
    cosine = -torch.sign(facing) * to_light.gather(-1, axis[..., None])[..., 0]
    light = 0.35 + 1.1 * (cosine * torch.rsqrt(distance2)).clamp(min=0) / (1 + 0.08 * distance2)
    light = light.masked_fill(labels == WINDOW, 1.0)  # windows glow
    albedo = scene.colours.index_select(0, material.view(-1)).T.view(3, *material.shape)
    return (albedo * (pattern * light)).clamp_(0, 1)


class MipTextures:
    """(M, T, T) wrapping tiles with their box-filtered mip chain (T, T/2, ..., 1), sampled
    trilinearly: a tile seen from afar is averaged over each pixel's footprint.

    All levels of all tiles sit in one atlas (a row of levels per material, each level padded
    by one wrapped row and column), so a lookup is a single ``grid_sample``. A scene's atlas
    stacks rows made once per process (``texture_rows``).
    """

    def __init__(self, rows: Tensor) -> None:
        count, size = rows.shape[0], rows.shape[1] - 1
        self.levels = int(math.log2(size)) + 1
        self.atlas = rows.reshape(1, 1, count * (size + 1), rows.shape[2])
        self.sizes = torch.tensor(mip_sizes(size), dtype=torch.float32)
        self.columns = torch.tensor(mip_columns(size)[:-1], dtype=torch.float32)
        self.row_stride = size + 1

    @staticmethod
    def rows(tiles: Tensor) -> Tensor:
        """(M, T + 1, columns): each tile's mip levels side by side, padded by wrapping."""
        count, size = tiles.shape[0], tiles.shape[-1]
        columns = mip_columns(size)
        rows = tiles.new_zeros(count, size + 1, columns[-1])
        level = tiles[:, None]
        for s, column in zip(mip_sizes(size), columns[:-1], strict=True):
            padded = F.pad(level, (0, 1, 0, 1), mode="circular")[:, 0]
            rows[:, : s + 1, column : column + s + 1] = padded
            level = F.avg_pool2d(level, 2, ceil_mode=True)
        return rows

    def sample(self, material: Tensor, x: Tensor, y: Tensor, lod: Tensor) -> Tensor:
        """Values at level-0 texel coordinates (x, y) and level of detail ``lod`` (log2 of
        the footprint in texels; 0 or less is the full-resolution tile)."""
        lod = lod.clamp(0, self.levels - 1)
        fine = lod.floor()
        levels = torch.stack([fine, (fine + 1).clamp_(max=self.levels - 1)]).long()  # (2, ...)
        size, scale = self.sizes.take(levels), torch.exp2(-levels.float())
        # texel centres line up across levels; wrap into the tile, then offset into the atlas
        u = torch.remainder((x + 0.5) * scale - 0.5, size) + self.columns.take(levels)
        v = torch.remainder((y + 0.5) * scale - 0.5, size) + material * self.row_stride
        height, width = self.atlas.shape[-2:]
        grid = torch.stack([u * (2 / (width - 1)) - 1, v * (2 / (height - 1)) - 1], dim=-1)
        values = F.grid_sample(
            self.atlas, grid.reshape(1, -1, 1, 2), mode="bilinear", align_corners=True
        ).reshape(levels.shape)
        return torch.lerp(values[0], values[1], lod - fine)
