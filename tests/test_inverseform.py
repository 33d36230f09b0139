import math

import pytest
import torch

from dense.errors import DenseError
from losses.inverseform import (
    InverseFormLoss,
    InverseNet,
    TransformRanges,
    matrix_to_params,
    official_inverse_net,
    params_to_matrix,
    sample_transforms,
    tile_maps,
    untile_maps,
    warp,
)
from losses.structure import load_inverse_net


@pytest.mark.parametrize(("height", "width", "tile"), [(64, 96, 32), (50, 70, 16), (16, 16, 16)])
def test_tiling_covers_everything_and_round_trips(height, width, tile):
    maps = torch.rand(3, 1, height, width)
    tiles = tile_maps(maps, tile)
    assert tiles.shape == (3 * math.ceil(height / tile) * math.ceil(width / tile), 1, tile, tile)
    assert torch.equal(untile_maps(tiles, 3, height, width), maps)
    assert tiles.sum().item() == pytest.approx(maps.sum().item(), rel=1e-5)  # nothing dropped


@pytest.mark.parametrize("parameters", [4, 6, 8])
def test_parameters_round_trip_and_identity_is_zero(parameters):
    matrix = sample_transforms(16, parameters, TransformRanges(), torch.Generator().manual_seed(0))
    params = matrix_to_params(matrix, parameters)
    assert params.shape == (16, parameters)
    assert torch.allclose(params_to_matrix(params, parameters), matrix, atol=1e-6)
    assert matrix_to_params(torch.eye(3)[None], parameters).abs().max() == 0


def test_warp_identity_and_known_shift():
    maps = torch.rand(2, 1, 16, 16)
    assert torch.allclose(warp(maps, torch.eye(3).expand(2, 3, 3)), maps, atol=1e-6)
    shift = torch.eye(3).expand(2, 3, 3).clone()
    shift[:, 0, 2] = 2 * 2 / 16  # two pixels in normalised units: output x samples input x + 2
    shifted = warp(maps, shift)
    assert torch.allclose(shifted[..., :-2], maps[..., 2:], atol=1e-5)


def test_warp_from_a_larger_context_fills_the_tile():
    context = torch.ones(1, 1, 32, 32)
    shift = torch.eye(3)[None].clone()
    shift[:, 0, 2] = 0.3
    tile = warp(context, shift, size=(16, 16), extent=2.0)
    assert tile.shape == (1, 1, 16, 16) and tile.min() > 0.99


def test_gradients_reach_the_prediction_and_never_the_network():
    net = InverseNet("conv", tile=16, parameters=6)
    loss_fn = InverseFormLoss(net).train()
    assert not loss_fn.net.training
    predicted = torch.rand(2, 1, 40, 40, requires_grad=True)
    target = (torch.rand(2, 1, 40, 40) > 0.8).float()
    loss_fn(predicted, target).backward()
    assert predicted.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())


def test_geodesic_distance_needs_homographies_and_is_zero_at_identity():
    with pytest.raises(ValueError):
        InverseFormLoss(InverseNet("conv", 16, 4), distance="geodesic")
    net = InverseNet("mlp", 8, 8, hidden=(4,))
    torch.nn.init.zeros_(net.fc[-1].weight)
    torch.nn.init.zeros_(net.fc[-1].bias)
    loss = InverseFormLoss(net, distance="geodesic")
    assert loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)).item() == pytest.approx(0)


def test_official_layout_loads(tmp_path):
    """Keys fc.0/fc.2/fc.4 (with or without a DataParallel prefix), shapes define the net."""
    tile, hidden = 8, (10, 3)
    layers = [
        torch.nn.Linear(2 * tile * tile, hidden[0]),
        torch.nn.Linear(*hidden),
        torch.nn.Linear(hidden[1], 4),
    ]
    state = {}
    for index, layer in zip((0, 2, 4), layers, strict=True):
        state[f"module.fc.{index}.weight"] = layer.weight.detach()
        state[f"module.fc.{index}.bias"] = layer.bias.detach()
    path = tmp_path / "distance_measures_regressor.pth"
    torch.save(state, path)
    net = load_inverse_net(str(path))
    assert (net.kind, net.tile, net.num_params, net.hidden) == ("mlp", 8, 4, (10, 3))
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    x = torch.cat([a.flatten(1), b.flatten(1)], 1)  # predicted first, as the release calls it
    expected = layers[2](torch.relu(layers[1](torch.relu(layers[0](x)))))
    assert torch.allclose(net(a, b), expected, atol=1e-6)
    with pytest.raises(ValueError):
        official_inverse_net({"fc.0.weight": torch.zeros(3, 128), "extra": torch.zeros(1)})


def test_unusable_network_files_are_clear_errors(tmp_path):
    with pytest.raises(DenseError, match="needs structure.network"):
        load_inverse_net("")
    with pytest.raises(DenseError, match="not found"):
        load_inverse_net(str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    with pytest.raises(DenseError, match="not an inverse network"):
        load_inverse_net(str(bad))


def shifted(maps: torch.Tensor, pixels: int) -> torch.Tensor:
    return torch.roll(maps, shifts=pixels, dims=-1)


def test_bundled_fitted_network_measures_misalignment():
    """On the shipped network: about 0 for identical maps, growing with a known shift,
    rotation or scale of real-looking boundaries (synthetic rooms, unseen while fitting),
    within the range it was fitted on (tile content moving up to ~5 px)."""
    from datasets.synthetic import SyntheticConfig, SyntheticRooms
    from losses.boundary import boundary_from_labels

    dataset = SyntheticRooms("val", SyntheticConfig(height=192, width=256))
    labels = torch.stack([dataset[i]["segmentation"] for i in range(6)])
    target, _ = boundary_from_labels(labels, radius=2)
    loss = InverseFormLoss(load_inverse_net("nyu13"))
    with torch.no_grad():
        same = loss(target, target).item()
        shifts = [loss(shifted(target, s), target).item() for s in (2, 4, 8)]
        matrices = []
        for angle, scale in ((0.5, 1.0), (2, 1.0), (0, 1.01), (0, 1.04)):
            m = torch.eye(3)
            a = math.radians(angle)
            m[:2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            matrices.append(m * torch.tensor([[scale], [scale], [1.0]]))
        warped = [loss(warp(target, m.expand(6, 3, 3)), target).item() for m in matrices]
    assert same < 0.5 * shifts[0]
    assert shifts[0] < shifts[1] < shifts[2]
    assert same < warped[0] < warped[1]  # rotation 0.5° < 2°
    assert same < warped[2] < warped[3]  # scale 1 % < 4 %
