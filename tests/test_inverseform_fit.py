"""``dense fit-inverseform``: settings rejected before any work, and the whole-map sweep."""

import math

import pytest
import torch

from dense.cli import main
from dense.inverseform.loss import InverseFormLoss
from dense.inverseform.network import InverseNet
from dense.inverseform.sweep import displacement, spearman, sweep, sweep_ranges


@pytest.mark.parametrize("setting", ["steps=0", "batch_size=0", "heldout_samples=0", "tile=0"])
def test_zero_sizes_are_one_error_line_before_any_work(setting, capsys):
    # the default source renders synthetic rooms: the check must come before that
    assert main(["fit-inverseform", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "at least 1" in err[0]


def test_a_config_file_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    config = tmp_path / "fit.toml"
    config.write_bytes(b"steps = 10\n# \xff\xfe caf\xe9\n")
    assert main(["fit-inverseform", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "UTF-8" in err[0]


def test_out_under_a_regular_file_is_one_error_line(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["fit-inverseform", f"out={blocker}/sub/net.pt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is a file" in err[0]


def test_sweep_ranges_scale_with_tile_and_size():
    assert sweep_ranges((240, 320), 64) == pytest.approx(
        {"shift": 16, "rotation": 15, "scale": 20, "elastic": 8}
    )
    bigger = sweep_ranges((480, 640), 128)  # twice the tile and the map: same in tiles
    assert bigger["shift"] == 32 and bigger["rotation"] == pytest.approx(15)


def test_displacements_have_the_requested_size():
    g = torch.Generator().manual_seed(0)
    shift = displacement("shift", 5.0, (40, 60), 16, g)
    assert torch.allclose(shift.norm(dim=-1), torch.tensor(5.0))
    elastic = displacement("elastic", 3.0, (40, 60), 16, g)
    assert elastic.square().sum(-1).mean().sqrt().item() == pytest.approx(3.0, rel=1e-4)
    scale = displacement("scale", 10.0, (40, 60), 16, g)  # 10 % of the distance to the centre
    assert scale[0, 0].norm().item() == pytest.approx(0.1 * math.hypot(29.5, 19.5), rel=1e-4)


def test_sweep_reports_every_family_and_identical_maps():
    torch.manual_seed(0)
    labels = torch.zeros(3, 48, 64, dtype=torch.long)
    labels[:, :, 20:] = 1
    labels[:, 30:, :] += 2
    net = InverseNet("conv", tile=16, parameters=6, distance_head=True)
    torch.nn.init.constant_(net.head.bias, 0.5)  # a random head could read 0 everywhere
    result = sweep(InverseFormLoss(net), labels, 255, 2)
    assert set(result["families"]) == {"shift", "rotation", "scale", "elastic"}
    for values in result["families"].values():
        assert len(values["mean"]) == len(values["std"]) == len(values["magnitudes"]) == 6
        assert values["mean"][0] == result["identical"]
    assert -1 <= result["spearman"] <= 1


def test_spearman_handles_ties():
    assert spearman(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])) == (
        pytest.approx(math.sqrt(0.8))
    )
