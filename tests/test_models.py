import pytest
import torch
from torch import nn

from inference import Upscaler
from models import ARCHS, FSRCNN, SRCNN, WeightsError, build_model, load_model

SRCNN_ARCHS = [arch for arch in ARCHS if not arch.startswith("fsrcnn")]


@pytest.mark.parametrize("arch", SRCNN_ARCHS)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_shapes_follow_the_paper(arch, padding):
    model = build_model(arch, padding=padding)
    f1, f2, f3 = ARCHS[arch]
    assert model.conv1.weight.shape == (64, 1, f1, f1)
    assert model.conv2.weight.shape == (32, 64, f2, f2)
    assert model.conv3.weight.shape == (1, 32, f3, f3)
    x = torch.rand(2, 1, 33, 33)
    out = model(x)
    side = 33 if padding == "same" else 33 - (f1 - 1) - (f2 - 1) - (f3 - 1)  # 9-1-5: 21, as in the paper
    assert out.shape == (2, 1, side, side)
    assert model.super_resolve(x).shape == x.shape


def test_valid_output_matches_same_output_away_from_the_border():
    torch.manual_seed(0)
    valid = build_model("9-5-5", padding="valid")
    same = build_model("9-5-5", padding="same")
    same.load_state_dict(valid.state_dict())
    x = torch.rand(1, 1, 40, 40)
    b = valid.border
    assert b == 8
    torch.testing.assert_close(valid(x), same(x)[..., b:-b, b:-b])


def test_paper_init():
    torch.manual_seed(0)
    model = build_model("9-5-5", paper_init=True)
    assert abs(model.conv2.weight.std().item() - 1e-3) < 1e-4
    assert model.conv1.bias.abs().max() == 0


def test_load_model_reads_the_layouts_people_publish(tmp_path):
    torch.manual_seed(0)
    source = build_model("9-1-5")
    state = source.state_dict()
    layouts = {
        "ours.pth": {"model": state, "meta": {"scale": 3, "padding": "valid"}},
        "checkpoint.pth": {"model_state_dict": state, "epoch": 10},
        "plain.pth": state,  # e.g. yjn870/SRCNN-pytorch
        "dataparallel.pth": {f"module.{k}": v for k, v in state.items()},
    }
    x = torch.rand(1, 1, 30, 30)
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
        model, meta = load_model(tmp_path / name)
        assert model.conv2.kernel_size == (1, 1)  # architecture read from the shapes
        assert model.padding == ("valid" if name == "ours.pth" else "same")
        same = load_model(tmp_path / name, padding="same")[0]
        torch.testing.assert_close(same(x), source(x))


def test_load_model_refuses_mismatched_weights(tmp_path):
    state = build_model("9-5-5").state_dict()
    state["conv2.weight"] = torch.zeros(32, 48, 5, 5)  # conv1 gives 64 channels
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth: layer shapes do not chain"):
        load_model(tmp_path / "bad.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="other.pth: not SRCNN weights"):
        load_model(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: not a loadable weights file"):
        load_model(tmp_path / "junk.pth")


def test_load_model_never_unpickles_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))
    torch.save({"model": build_model().state_dict(), "extra": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="evil.pth"):
        load_model(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


def test_srcnn_rejects_unknown_padding():
    with pytest.raises(ValueError, match="padding"):
        SRCNN(padding="reflect")


@pytest.mark.parametrize("arch,d,s,m", [("fsrcnn", 56, 12, 4), ("fsrcnn-s", 32, 5, 1)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_follows_its_paper(arch, d, s, m, scale):
    model = build_model(arch, scale=scale)
    assert isinstance(model, FSRCNN) and model.takes_lr
    convs = [mod for mod in model.modules() if isinstance(mod, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [5, 1] + [3] * m + [1]
    assert [c.out_channels for c in convs] == [d, s] + [s] * m + [d]
    assert sum(isinstance(mod, nn.PReLU) for mod in model.modules()) == m + 3
    assert model.deconv.kernel_size == (9, 9) and model.deconv.stride == (scale, scale)
    assert model(torch.rand(2, 1, 11, 13)).shape == (2, 1, 11 * scale, 13 * scale)


def test_fsrcnn_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("fsrcnn-s", scale=4)
    torch.save({"model": model.state_dict(), "meta": model.config()}, tmp_path / "ours.pth")
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    x = torch.rand(1, 1, 10, 10)
    loaded, _ = load_model(tmp_path / "ours.pth")
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(WeightsError, match="plain.pth: FSRCNN weights without a recorded scale"):
        load_model(tmp_path / "plain.pth")
    torch.testing.assert_close(load_model(tmp_path / "plain.pth", scale=4)[0](x), model(x))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_subpixel_inference_equals_the_deconvolution(scale):
    torch.manual_seed(scale)
    model = build_model("fsrcnn", scale=scale).eval()
    nn.init.normal_(model.deconv.weight, std=0.05)  # the paper's 0.001 would make any kernel look right
    nn.init.normal_(model.deconv.bias, std=0.05)
    x = torch.rand(1, 1, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(model.super_resolve(x), model(x), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("arch,padding,scale", [("9-5-5", "same", 3), ("9-5-5", "valid", 3), ("fsrcnn", "same", 3),
                                                ("fsrcnn-s", "same", 2), ("fsrcnn", "same", 4)])
def test_tiled_inference_equals_whole_image_inference(arch, padding, scale):
    torch.manual_seed(0)
    model = build_model(arch, padding=padding, scale=scale).eval()
    if model.takes_lr:
        nn.init.normal_(model.deconv.weight, std=0.05)
    x = torch.rand(1, 1, 61, 47)
    upscaler = Upscaler(model, "eager")
    whole = upscaler(x)
    for tile in (16, 25, 64):
        torch.testing.assert_close(upscaler(x, tile), whole, atol=1e-5, rtol=0)
