import pytest
import timm
import torch

from dense.config import ModelConfig
from dense.errors import DenseError
from dense.model import Encoder, build_model
from dense.task import DataInfo
from tasks.depth import Depth, DepthConfig
from tasks.segmentation import Segmentation, SegmentationConfig

INFO = DataInfo(class_names=tuple("abcde"), ignore_index=255)


def tasks():
    return {
        "segmentation": Segmentation("segmentation", SegmentationConfig(), INFO),
        "depth": Depth("depth", DepthConfig(min_depth=0.5, max_depth=4.0), INFO),
    }


@pytest.mark.parametrize("size", [(32, 48), (37, 53), (65, 31)])
def test_any_input_size_gives_outputs_of_that_size(size):
    model = build_model(ModelConfig(encoder="test_resnet", decoder_channels=8), tasks()).eval()
    out = model(torch.rand(2, 3, *size))
    assert out["segmentation"].shape == (2, 5, *size)
    assert out["depth"].shape == (2, 1, *size)
    assert out["depth"].min() >= 0.5 and out["depth"].max() <= 4.0


def test_padding_does_not_leak_into_the_visible_output():
    """Changing only pixels outside the image (i.e. nothing) is the same as the crop of a
    padded input: the output for a 37×53 image equals the top-left of the 64×64 output
    when the padding is what the model itself uses (replicate)."""
    model = build_model(ModelConfig(encoder="test_resnet", decoder_channels=8), tasks()).eval()
    image = torch.rand(1, 3, 37, 53)
    padded = torch.nn.functional.pad(image, (0, 11, 0, 27), mode="replicate")
    with torch.no_grad():
        direct, full = model(image)["depth"], model(padded)["depth"]
    assert torch.allclose(direct, full[..., :37, :53], atol=1e-6)


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(DenseError, match="model.encoder 'not_a_model'"):
        Encoder("not_a_model")


def test_encoder_weights_load_from_a_local_file(tmp_path):
    source = timm.create_model("test_resnet")
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    encoder = Encoder("test_resnet", weights=str(path))
    assert torch.equal(encoder.body.conv1[0].weight, source.conv1[0].weight)
    with pytest.raises(DenseError, match="not found"):
        Encoder("test_resnet", weights=str(tmp_path / "missing.pth"))
