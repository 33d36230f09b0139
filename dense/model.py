"""Model assembly: a timm encoder (features_only) → FPN decoder → one head per task.

The model takes RGB images in [0, 1] (it normalises them itself, so checkpoints are
self-contained) of any size: inputs are padded to a multiple of the encoder stride and every
output is cropped back.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense.checkpoint import FORMAT
from dense.config import ModelConfig
from dense.errors import DenseError
from dense.layers import conv_bn_relu
from dense.task import Outputs, Task


class Encoder(nn.Module):
    """A timm backbone returning its feature maps at strides ≥ 4, finest first."""

    def __init__(self, name: str, pretrained: bool = False, weights: str = "") -> None:
        super().__init__()
        kwargs = {}
        if weights:
            check_weights(Path(weights))
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
            pretrained = True
        try:
            self.body = timm.create_model(name, features_only=True, pretrained=pretrained, **kwargs)
        except RuntimeError as error:
            raise DenseError(f"model.encoder '{name}': {first_line(error)}") from None
        except (OSError, ValueError) as error:
            detail = first_line(error)
            raise DenseError(f"model.encoder '{name}': cannot load weights: {detail}") from None
        reductions = self.body.feature_info.reduction()
        self.keep = [i for i, r in enumerate(reductions) if r >= 4]
        self.channels = [self.body.feature_info.channels()[i] for i in self.keep]
        self.stride = max(reductions)
        config = self.body.pretrained_cfg or {}
        self.register_buffer("mean", torch.tensor(config.get("mean", (0.485, 0.456, 0.406))))
        self.register_buffer("std", torch.tensor(config.get("std", (0.229, 0.224, 0.225))))

    def forward(self, image: Tensor) -> list[Tensor]:
        x = (image - self.mean[:, None, None]) / self.std[:, None, None]
        features = self.body(x)
        return [features[i] for i in self.keep]


def check_weights(path: Path) -> None:
    """Refuse a ``model.weights`` file that is missing, unreadable or a dense checkpoint (whose
    keys timm would silently skip, leaving the encoder random)."""
    if not path.is_file():
        raise DenseError(f"model.weights: file not found: {path}")
    if path.suffix == ".safetensors":
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # random bytes can make the unpickler fail in any way
        raise DenseError(f"model.weights: {path} is not a readable PyTorch weights file") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        raise DenseError(
            f"model.weights: {path} is a dense checkpoint, not encoder weights "
            "(continue its run with --resume, or give a timm/torchvision state dict)"
        )


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class FPN(nn.Module):
    """Feature pyramid: lateral 1×1 convs, top-down sums, a 3×3 conv per level.

    Returns the levels finest first; the finest also sums every coarser level (upsampled),
    so single-scale heads read all scales and multi-scale heads can read each level.
    """

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(conv_bn_relu(channels, channels) for _ in in_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        levels = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(levels) - 2, -1, -1):
            levels[i] = levels[i] + F.interpolate(levels[i + 1], size=levels[i].shape[-2:])
        levels = [conv(level) for conv, level in zip(self.smooth, levels, strict=True)]
        size = levels[0].shape[-2:]
        fused = levels[0] + sum(
            F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            for level in levels[1:]
        )
        return [fused, *levels[1:]]


class DenseModel(nn.Module):
    """Shared encoder and decoder with one head per task; returns :class:`Outputs`.

    Tasks' auxiliary networks (training-only, e.g. a pose network) run when the batch is
    passed too; their outputs go to ``Outputs.auxiliary`` under the task's name.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: nn.Module,
        heads: dict[str, nn.Module],
        auxiliary: dict[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.heads = nn.ModuleDict(heads)
        self.auxiliary = nn.ModuleDict(auxiliary or {})

    def forward(self, image: Tensor, batch: dict[str, Tensor] | None = None) -> Outputs:
        height, width = image.shape[-2:]
        stride = self.encoder.stride
        pad_h, pad_w = -height % stride, -width % stride
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        pyramid = self.decoder(self.encoder(image))
        size = (height + pad_h, width + pad_w)
        predictions = {
            name: crop(head(pyramid, size), size, (height, width))
            for name, head in self.heads.items()
        }
        auxiliary = {}
        if batch is not None:
            auxiliary = {name: network(batch) for name, network in self.auxiliary.items()}
        return Outputs(predictions, {k: v for k, v in auxiliary.items() if v is not None})


def crop(output, padded: tuple[int, int], size: tuple[int, int]):
    """Crop a tensor (or a dict/list of tensors at any scale) from the padded to the real size."""
    if isinstance(output, dict):
        return {key: crop(value, padded, size) for key, value in output.items()}
    if isinstance(output, list | tuple):
        return type(output)(crop(value, padded, size) for value in output)
    if output.dim() < 3:
        return output
    scale = padded[0] / output.shape[-2]
    rows, cols = -(-size[0] // round(scale)), -(-size[1] // round(scale))
    return output[..., :rows, :cols]


def build_model(config: ModelConfig, tasks: dict[str, Task]) -> DenseModel:
    encoder = Encoder(config.encoder, config.pretrained, config.weights)
    decoder = FPN(encoder.channels, config.decoder_channels)
    heads = {name: task.head(config.decoder_channels) for name, task in tasks.items()}
    auxiliary = {name: task.auxiliary() for name, task in tasks.items()}
    networks = {name: network for name, network in auxiliary.items() if network is not None}
    return DenseModel(encoder, decoder, heads, networks)
