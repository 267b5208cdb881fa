import re

import pytest
import torch
from torch import nn

import models
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


def srcnn_state(**changes: torch.Tensor) -> dict:
    """SRCNN 9-5-5 weights with some tensors replaced (None: removed)."""
    state = build_model("9-5-5").state_dict()
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def huge(*shape: int) -> torch.Tensor:
    """A tensor of any declared shape stored as one number (stride 0): a few bytes in a file."""
    return torch.zeros(1).expand(*shape)


def fsrcnn_file(**changes: torch.Tensor | None) -> dict:
    state = build_model("fsrcnn", scale=3).state_dict()
    state.update(changes)
    return {"model": {k: v for k, v in state.items() if v is not None}, "meta": {"scale": 3}}


BAD_WEIGHTS = {  # file contents -> what the one-line error says
    "nan": (srcnn_state(**{"conv1.weight": torch.full((64, 1, 9, 9), float("nan"))}), "conv1.weight holds NaN/Inf values"),
    "inf": (fsrcnn_file(**{"deconv.bias": torch.tensor([float("inf")])}), "deconv.bias holds NaN/Inf values"),
    "huge": (srcnn_state(**{"conv1.weight": huge(100_000, 1, 9, 9), "conv1.bias": huge(100_000),
                            "conv2.weight": huge(32, 100_000, 5, 5)}), "more than 1024 channels"),
    "zero_channels": (srcnn_state(**{"conv1.weight": torch.zeros(0, 1, 9, 9), "conv1.bias": torch.zeros(0),
                                     "conv2.weight": torch.zeros(32, 0, 5, 5)}), "conv1.weight has a zero-size dimension"),
    "even_kernel": (srcnn_state(**{"conv1.weight": torch.zeros(64, 1, 8, 8)}), "8x8 kernel"),
    "big_kernel": (srcnn_state(**{"conv2.weight": torch.zeros(32, 64, 17, 17)}), "17x17 kernel"),
    "oblong_kernel": (srcnn_state(**{"conv3.weight": torch.zeros(1, 32, 5, 3)}), "5x3 kernel"),
    "two_channels": (srcnn_state(**{"conv1.weight": torch.zeros(64, 2, 9, 9), "conv3.weight": torch.zeros(2, 32, 5, 5)}),
                     "takes 2 input channels"),
    "parameters": (srcnn_state(**{"conv1.weight": huge(300, 1, 15, 15), "conv1.bias": huge(300),
                                  "conv2.weight": huge(300, 300, 15, 15), "conv2.bias": huge(300),
                                  "conv3.weight": huge(1, 300, 5, 5)}), "parameters, more than 10,000,000"),
    "bias_shape": (srcnn_state(**{"conv1.bias": torch.zeros(63)}), "conv1.bias is (63,), expected (64,)"),
    "extra_layer": (srcnn_state(**{"conv4.weight": torch.zeros(1, 1, 3, 3)}), "unexpected conv4.weight"),
    "integers": (srcnn_state(**{"conv2.bias": torch.zeros(32, dtype=torch.int64)}), "conv2.bias is not a dense floating"),
    "not_a_tensor": ({"model": {**srcnn_state(), "conv1.bias": [0.0] * 64}}, "'conv1.bias' is not a named tensor"),
    "meta_list": ({"model": srcnn_state(), "meta": [3]}, "metadata is a list"),
    "padding": ({"model": srcnn_state(), "meta": {"padding": "reflect"}}, "records padding 'reflect'"),
    "fsrcnn_no_shrink": (fsrcnn_file(**{"shrink.0.weight": None}), "missing or malformed: shrink.0.weight"),
    "fsrcnn_no_prelu": (fsrcnn_file(**{"expand.1.weight": None}), "missing expand.1.weight"),
    "fsrcnn_gap": (fsrcnn_file(**{"mapping.6.weight": None, "mapping.6.bias": None, "mapping.7.weight": None,
                                  "mapping.9.weight": torch.zeros(12, 12, 3, 3)}), "unexpected mapping.9.weight"),
    "fsrcnn_deconv": (fsrcnn_file(**{"deconv.weight": torch.zeros(56, 1, 7, 7)}), "deconv.weight is (56, 1, 7, 7)"),
    "fsrcnn_scale": ({**fsrcnn_file(), "meta": {"scale": 5}}, "FSRCNN weights for scale 5"),
}


@pytest.mark.parametrize("case", BAD_WEIGHTS)
def test_load_model_refuses_weights_that_are_not_sane(tmp_path, case):
    contents, message = BAD_WEIGHTS[case]
    torch.save(contents, tmp_path / f"{case}.pth")
    with pytest.raises(WeightsError, match=f"^{re.escape(str(tmp_path / case))}.pth: .*{re.escape(message)}"):
        load_model(tmp_path / f"{case}.pth")


def test_crafted_shapes_are_refused_before_any_network_is_built(tmp_path, monkeypatch):
    """A file of a few KB declaring a 100000-filter conv1 (and a 32 x 100000 conv2): building that network
    would allocate what the shapes say; the shapes are refused before SRCNN is ever constructed."""
    torch.save(BAD_WEIGHTS["huge"][0], tmp_path / "huge.pth")
    assert (tmp_path / "huge.pth").stat().st_size < 20_000

    def never(*args, **kwargs):
        raise AssertionError("a network was built from unchecked shapes")
    monkeypatch.setattr(models, "SRCNN", never)
    with pytest.raises(WeightsError, match="huge.pth: conv1.weight .* more than 1024 channels"):
        load_model(tmp_path / "huge.pth")


def test_empty_weights_file_is_refused(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty.pth: empty file"):
        load_model(tmp_path / "empty.pth")
