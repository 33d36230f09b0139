"""InverseForm (Borse et al., CVPR 2021): a structure loss from a frozen inverse-transformation
network.

The network looks at a pair of boundary tiles (predicted, target) and regresses the spatial
transformation between them as normalised parameters, which are 0 for the identity; the loss
is their distance from the identity, averaged over the tiles that cover the whole map and hold
some boundary in either map (tile pairs that are both nearly empty are skipped).

Parameterisations (all in normalised image coordinates, [-1, 1]):

- 4: scale x, scale y, shift x, shift y — what the public release regresses;
- 6: affine, the 2×3 matrix minus the identity;
- 8: homography with h33 = 1, minus the identity.

Each parameter is divided by its spread under the training distribution (stored in the
network as ``param_scale``) so that no parameter dominates the distance.

Distances: ``euclidean`` (the paper's ‖θ̂‖ over normalised parameters), ``geodesic`` (‖log H‖,
homographies) and ``pixels``: how far the tile's content moved, as the root-mean-square
displacement over the tile in pixels — read from a distance head where the network has one
(fitted on the true displacement, so it keeps growing where the parameters become ambiguous),
otherwise computed from the regressed transformation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

Kind = Literal["mlp", "conv"]
PARAMETER_COUNTS = (4, 6, 8)


# ---------------------------------------------------------------- transformations


@dataclass
class TransformRanges:
    """Ranges of the random transformations the network learns to regress."""

    rotation: float = 20.0  # degrees, ±
    scale: float = 0.25  # relative, ±
    shear: float = 0.05  # ±
    shift: float = 0.75  # normalised units (1 = half the tile), ±
    perspective: float = 0.15  # homography h31, h32, ±


def sample_transforms(
    count: int, parameters: int, ranges: TransformRanges, generator: torch.Generator
) -> Tensor:
    """(count, 3, 3) random transformations of the given family. Each sample's deviation
    from the identity is scaled by a uniform factor, so small transformations are common."""

    def uniform(bound: float) -> Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * bound

    strength = torch.rand(count, generator=generator)
    sx = 1 + uniform(ranges.scale) * strength
    sy = 1 + uniform(ranges.scale) * strength
    tx, ty = uniform(ranges.shift) * strength, uniform(ranges.shift) * strength
    matrix = torch.eye(3).repeat(count, 1, 1)
    if parameters == 4:
        matrix[:, 0, 0], matrix[:, 1, 1] = sx, sy
    else:
        angle = uniform(math.radians(ranges.rotation)) * strength
        shear = uniform(ranges.shear) * strength
        cos, sin = torch.cos(angle), torch.sin(angle)
        matrix[:, 0, 0], matrix[:, 0, 1] = cos * sx, -sin * sy + shear
        matrix[:, 1, 0], matrix[:, 1, 1] = sin * sx, cos * sy
        if parameters == 8:
            matrix[:, 2, 0] = uniform(ranges.perspective) * strength
            matrix[:, 2, 1] = uniform(ranges.perspective) * strength
    matrix[:, 0, 2], matrix[:, 1, 2] = tx, ty
    return matrix


def matrix_to_params(matrix: Tensor, parameters: int) -> Tensor:
    """(N, 3, 3) → (N, P) raw parameters, all 0 for the identity."""
    if parameters == 4:
        return torch.stack(
            [matrix[:, 0, 0] - 1, matrix[:, 1, 1] - 1, matrix[:, 0, 2], matrix[:, 1, 2]], dim=1
        )
    eye = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    if parameters == 6:
        return (matrix - eye)[:, :2].reshape(-1, 6)
    normalised = matrix / matrix[:, 2:3, 2:3]
    return (normalised - eye).reshape(-1, 9)[:, :8]


def params_to_matrix(params: Tensor, parameters: int) -> Tensor:
    """Inverse of :func:`matrix_to_params`."""
    n = params.shape[0]
    eye = torch.eye(3, dtype=params.dtype, device=params.device).repeat(n, 1, 1)
    if parameters == 4:
        matrix = eye.clone()
        matrix[:, 0, 0] += params[:, 0]
        matrix[:, 1, 1] += params[:, 1]
        matrix[:, 0, 2] = params[:, 2]
        matrix[:, 1, 2] = params[:, 3]
        return matrix
    if parameters == 6:
        return eye + F.pad(params.reshape(n, 2, 3), (0, 0, 0, 1))
    return eye + F.pad(params, (0, 1)).reshape(n, 3, 3)


def rms_displacement(matrix: Tensor, points: int = 8) -> Tensor:
    """(N,) root-mean-square distance, in normalised units (1 = half the tile), that the
    transformations (N, 3, 3) move the points of the tile (a ``points``² grid of cell centres)."""
    ticks = (torch.arange(points, dtype=matrix.dtype, device=matrix.device) + 0.5) / points * 2 - 1
    ys, xs = torch.meshgrid(ticks, ticks, indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])  # (3, K)
    mapped = matrix @ grid
    moved = mapped[:, :2] / mapped[:, 2:3].clamp(min=1e-6) - grid[:2]
    return moved.square().sum(1).mean(1).sqrt()


def warp(
    maps: Tensor, matrix: Tensor, size: tuple[int, int] | None = None, extent: float = 1.0
) -> Tensor:
    """Warp (N, C, H, W) maps with (N, 3, 3) transformations in normalised coordinates.

    Output pixel x (normalised over an output of ``size``, default the input's) samples the
    input at ``matrix @ x``. ``extent`` says how far the input reaches in output units: 2
    means the input is twice the output's size and centred on it, so a warped tile is filled
    with real content instead of zeros. affine_grid builds the grid; homographies add the
    projective division; grid_sample reads the maps.
    """
    n, c, h, w = maps.shape
    size = size or (h, w)
    identity = torch.eye(2, 3, dtype=maps.dtype, device=maps.device).expand(n, 2, 3)
    base = F.affine_grid(identity, [n, c, *size], align_corners=False)  # (N, h, w, 2)
    points = F.pad(base, (0, 1), value=1.0)  # homogeneous (x, y, 1)
    mapped = points @ matrix.to(maps.dtype).transpose(1, 2)[:, None]
    grid = mapped[..., :2] / mapped[..., 2:3].clamp(min=1e-6) / extent
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ------------------------------------------------------------------------ networks


class InverseNet(nn.Module):
    """Regresses normalised transformation parameters from a (predicted, target) tile pair,
    plus, with ``distance_head``, the RMS displacement between them (last output).

    ``kind="mlp"`` is the paper's network: both tiles flattened and concatenated, then fully
    connected layers (``fc.0``, ``fc.2``, ``fc.4`` — the official checkpoint layout when
    tile=224, hidden=(1000, 32), parameters=4). ``kind="conv"`` is a small strided CNN over
    the two tiles plus two coordinate channels, globally average-pooled: the coordinates let
    pooled features still tell rotation and scale from shift, at a fraction of the weights.
    """

    def __init__(
        self,
        kind: Kind = "conv",
        tile: int = 64,
        parameters: int = 4,
        hidden: tuple[int, ...] = (1000, 32),
        channels: tuple[int, ...] = (16, 32, 64, 64),
        distance_head: bool = False,
    ) -> None:
        super().__init__()
        if parameters not in PARAMETER_COUNTS:
            raise ValueError(f"parameters must be one of {PARAMETER_COUNTS}")
        self.kind, self.tile, self.num_params = kind, tile, parameters
        self.hidden, self.channels = tuple(hidden), tuple(channels)
        self.distance_head = distance_head
        outputs = parameters + int(distance_head)
        self.register_buffer("param_scale", torch.ones(outputs))
        if kind == "mlp":
            widths = [2 * tile * tile, *hidden, outputs]
            layers: list[nn.Module] = []
            for i in range(len(widths) - 1):
                layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU(inplace=True)]
            self.fc = nn.Sequential(*layers[:-1])
        else:
            layers, width = [], 4
            for out in channels:
                layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
                width = out
            # channels-last: about 1.4x faster forward+backward on the CPU (oneDNN), fine on GPU
            self.features = nn.Sequential(*layers).to(memory_format=torch.channels_last)
            self.head = nn.Linear(width, outputs)

    def forward(self, predicted: Tensor, target: Tensor) -> Tensor:
        """Tiles (N, 1, T, T) each → (N, P) normalised parameters (0 = identical tiles), or
        (N, P + 1) with the distance head."""
        if self.kind == "mlp":
            return self.fc(torch.cat([predicted.flatten(1), target.flatten(1)], dim=1))
        n, _, h, w = predicted.shape
        ys = torch.linspace(-1, 1, h, device=predicted.device, dtype=predicted.dtype)
        xs = torch.linspace(-1, 1, w, device=predicted.device, dtype=predicted.dtype)
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(n, 2, h, w)
        x = torch.cat([predicted, target, grid], dim=1).contiguous(
            memory_format=torch.channels_last
        )
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)))

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "tile": self.tile,
            "parameters": self.num_params,
            "hidden": list(self.hidden),
            "channels": list(self.channels),
            "distance_head": self.distance_head,
        }

    @classmethod
    def from_state(cls, state: dict) -> InverseNet:
        """Rebuild from ``{"network": config(), "state_dict": ...}`` (what fit-inverseform
        saves) or from a bare state dict in the official release's layout."""
        if "state_dict" in state and "network" in state:
            net = cls(**state["network"])
            net.load_state_dict(state["state_dict"])
            return net
        return official_inverse_net(state)


def official_inverse_net(state_dict: dict[str, Tensor]) -> InverseNet:
    """The public release's network: MLP 2·224·224 → 1000 → 32 → 4, keys fc.0/fc.2/fc.4.
    Its outputs are already normalised, so ``param_scale`` stays 1."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    try:
        first = state_dict["fc.0.weight"]
        hidden = (first.shape[0], state_dict["fc.2.weight"].shape[0])
        outputs = state_dict["fc.4.weight"].shape[0]
    except (KeyError, AttributeError, IndexError):
        raise ValueError("not the official layout (fc.0, fc.2, fc.4 linear layers)") from None
    net = InverseNet("mlp", math.isqrt(first.shape[1] // 2), outputs, hidden)
    missing, unexpected = net.load_state_dict(state_dict, strict=False)
    if unexpected or [key for key in missing if key != "param_scale"]:
        raise ValueError(f"not the official layout: missing {missing}, unexpected {unexpected}")
    return net


# ---------------------------------------------------------------------------- loss


def tile_maps(maps: Tensor, tile: int) -> Tensor:
    """(B, C, H, W) → (B·nh·nw, C, tile, tile), zero-padding the bottom/right edges so the
    whole map is covered (zero = no boundary, so padding adds only empty area)."""
    h, w = maps.shape[-2:]
    maps = F.pad(maps, (0, -w % tile, 0, -h % tile))
    return rearrange(maps, "b c (nh th) (nw tw) -> (b nh nw) c th tw", th=tile, tw=tile)


def untile_maps(tiles: Tensor, batch: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`tile_maps` (the padding is cropped away)."""
    tile = tiles.shape[-1]
    nh, nw = -(-height // tile), -(-width // tile)
    maps = rearrange(tiles, "(b nh nw) c th tw -> b c (nh th) (nw tw)", b=batch, nh=nh, nw=nw)
    return maps[..., :height, :width]


def geodesic_distance(params: Tensor, parameters: int, scale: Tensor, terms: int = 8) -> Tensor:
    """‖log M‖_F for the transformations given by normalised params (series of log(I + X),
    accurate for the near-identity transformations a trained model produces)."""
    matrix = params_to_matrix(params * scale, parameters)
    x = matrix - torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    log, power = torch.zeros_like(x), torch.eye(3, dtype=x.dtype, device=x.device).expand_as(x)
    for k in range(1, terms + 1):
        power = power @ x
        log = log + ((-1) ** (k + 1) / k) * power
    return log.flatten(1).norm(dim=1)


Distance = Literal["pixels", "euclidean", "geodesic"]


def tile_distance(net: InverseNet, outputs: Tensor, distance: Distance) -> Tensor:
    """(N,) distances from the identity of the network's (N, P[+1]) outputs."""
    params = outputs[:, : net.num_params]
    if distance == "euclidean":
        return params.norm(dim=1)
    if distance == "geodesic":
        return geodesic_distance(params, 8, net.param_scale[:8])
    if net.distance_head:
        return F.relu(outputs[:, -1]) * net.param_scale[-1] * (net.tile / 2)
    matrix = params_to_matrix(params * net.param_scale[: net.num_params], net.num_params)
    return rms_displacement(matrix) * (net.tile / 2)


class InverseFormLoss(nn.Module):
    """Mean over tiles of the distance from the identity of the transformation that the frozen
    network sees between predicted and target boundary maps (B, 1, H, W), both in [0, 1].

    Tile pairs where both maps' mean is below ``empty`` are skipped (nothing to align, and the
    network was never fitted on them); the mean runs over the tiles that count, and is 0 when
    none does. ``resize`` (H, W) first resizes both maps, as the release does (672×1344); by
    default the maps keep their size and the tiling pads them. The network never trains here:
    it stays in eval mode with ``requires_grad=False``, while gradients flow into the predicted
    map.
    """

    def __init__(
        self,
        net: InverseNet,
        distance: Distance = "pixels",
        resize: tuple[int, int] | None = None,
        empty: float = 0.01,
    ) -> None:
        super().__init__()
        if distance == "geodesic" and net.num_params != 8:
            raise ValueError("the geodesic distance is defined for 8-parameter homographies")
        self.net = net.eval().requires_grad_(False)
        self.distance = distance
        self.resize = resize
        self.empty = empty

    def train(self, mode: bool = True) -> InverseFormLoss:
        return self  # the network is frozen: always eval

    def tile_distances(self, predicted: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Distances of the tile pairs that count, and the map each of them belongs to."""
        if self.resize is not None:
            predicted = F.interpolate(predicted, size=self.resize, mode="bilinear")
            target = F.interpolate(target, size=self.resize, mode="bilinear")
        tiles_p = tile_maps(predicted.float(), self.net.tile)
        tiles_t = tile_maps(target.float(), self.net.tile)
        keep = (tiles_p.mean(dim=(1, 2, 3)) >= self.empty) | (
            tiles_t.mean(dim=(1, 2, 3)) >= self.empty
        )
        maps = torch.arange(len(predicted), device=keep.device)
        maps = maps.repeat_interleave(len(keep) // len(predicted))[keep]
        outputs = self.net(tiles_p[keep], tiles_t[keep])
        return tile_distance(self.net, outputs, self.distance), maps

    def forward(self, predicted: Tensor, target: Tensor) -> Tensor:
        distances, _ = self.tile_distances(predicted, target)
        return distances.mean() if len(distances) else predicted.sum() * 0.0

    def per_map(self, predicted: Tensor, target: Tensor) -> Tensor:
        """(B,) mean distance over each map's tiles that count (0 where none does)."""
        distances, maps = self.tile_distances(predicted, target)
        total = distances.new_zeros(len(predicted)).index_add_(0, maps, distances)
        return total / torch.bincount(maps, minlength=len(predicted)).clamp(min=1)
