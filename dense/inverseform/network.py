"""The inverse-transformation network: the paper's MLP or a small CNN over a tile pair, its
saved form, the official release's layout, and the bundled networks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from dense.errors import DenseError

Kind = Literal["mlp", "conv"]
PARAMETER_COUNTS = (4, 6, 8)
BUNDLED = {"nyu13": Path(__file__).parent / "data" / "inverse_net_nyu13.pt"}


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


def load_inverse_net(path: str | Path) -> InverseNet:
    """Load a fitted inverse network: a file, or the name of a bundled one (``"nyu13"``).
    It leaves the global RNG as it found it (the loaded weights replace the random ones), so
    the same seed draws the same random numbers in runs with and without InverseForm."""
    path = BUNDLED.get(str(path), path)
    if not str(path):
        raise DenseError(
            "structure.inverseform > 0 needs structure.network (an inverse network file)"
        )
    if not Path(path).is_file():
        raise DenseError(f"structure.network: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.random.fork_rng(devices=[]):
            return InverseNet.from_state(state)
    except Exception as error:  # any unreadable or foreign file
        raise DenseError(f"structure.network {path} is not an inverse network: {error}") from None
