"""The InverseForm loss: tile both boundary maps, skip tile pairs with nothing to align, and
average the frozen network's distance from the identity over the rest."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dense.inverseform.network import InverseNet
from dense.inverseform.transforms import params_to_matrix, rms_displacement


def tile_maps(maps: Tensor, tile: int) -> Tensor:
    """(B, C, H, W) → (B·nh·nw, C, tile, tile), zero-padding the bottom/right edges so the
    whole map is covered (zero = no boundary, so padding adds only empty area)."""
    h, w = maps.shape[-2:]
    maps = F.pad(maps, (0, -w % tile, 0, -h % tile))
    return rearrange(maps, "b c (nh th) (nw tw) -> (b nh nw) c th tw", th=tile, tw=tile)


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
