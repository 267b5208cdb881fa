"""The fast inference paths: each gives eager fp32's result within 1/255 on Y, ONNX export round-trips, a
cached ONNX graph is checked before use, and tiled inference (asked for, or automatic past the activation
budget) stays in bounded memory."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, run, textured_image
from PIL import Image
from skimage import data as skimage_data

import tiles
from inference import Upscaler, default_inference_path, export_onnx
from models import SRCNN, build_model, load_model
from utils import degrade, load_image, y_channel

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture(scope="module")
def astronaut_bicubic() -> torch.Tensor:
    """The bicubic x3 Y of a real photo, as SRCNN sees it (170 x 168 LR)."""
    bicubic = degrade(skimage_data.astronaut()[:510, :504], 3)[1]
    return torch.from_numpy(y_channel(bicubic) / 255).float()[None, None]


@pytest.mark.parametrize("path", ["channels_last", "onnxruntime", "compile",
                                  pytest.param("fp16", marks=CUDA), pytest.param("bf16", marks=CUDA)])
def test_fast_paths_match_eager_fp32_within_one_level_bf16_within_four(path, astronaut_bicubic):
    model = load_model(REPO / "weights" / "srcnn_x3.pth")[0]
    device = torch.device("cuda" if path in ("fp16", "bf16") else "cpu")
    eager = Upscaler(model, "eager", device)(astronaut_bicubic).clamp(0, 1).cpu()
    fast = Upscaler(model, path, device)(astronaut_bicubic).clamp(0, 1).cpu()
    assert fast.dtype == torch.float32 and fast.shape == eager.shape
    # bf16 keeps 8 mantissa bits: 2.5 levels off on an H200, which is why auto never picks it
    assert (fast - eager).abs().max().item() * 255 < (4 if path == "bf16" else 1)


def test_default_path_per_device():
    assert default_inference_path(torch.device("cpu")) == "onnxruntime"
    assert default_inference_path(torch.device("cuda")) == "fp16"


def test_without_onnxruntime_the_default_is_channels_last(tmp_path):
    # A sitecustomize that hides onnxruntime, as on a machine where it did not install.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['onnxruntime'] = None\n")
    check = "import torch, inference; print(inference.default_inference_path(torch.device('cpu')))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.stdout.strip() == "channels_last", result.stderr
    ran = subprocess.run([sys.executable, str(REPO / "test.py"), "--output-dir", tmp_path / "out"], capture_output=True,
                         text=True, cwd=REPO, timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert ran.returncode == 0 and "SRCNN PSNR" in ran.stdout, ran.stderr


def test_onnx_graph_is_exported_once_per_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path))
    model = build_model("9-5-5")
    Upscaler(model, "onnxruntime")
    Upscaler(model, "onnxruntime")
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    torch.nn.init.zeros_(model.conv3.bias)  # other weights, another graph
    Upscaler(model, "onnxruntime")
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_upscalers_of_one_model_keep_their_own_layout():
    model = build_model("9-5-5")
    Upscaler(model, "channels_last")
    eager = Upscaler(model, "eager")
    Upscaler(model, "channels_last")  # must not change the eager upscaler's copy
    assert eager.model.conv2.weight.is_contiguous()
    assert not eager.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)


def test_onnx_export_of_shipped_weights_round_trips(tmp_path, astronaut_bicubic):
    import onnxruntime
    result = run("test.py", "--scale", "3", "--export-onnx", tmp_path / "srcnn_x3.onnx")
    assert result.returncode == 0, result.stderr
    session = onnxruntime.InferenceSession(str(tmp_path / "srcnn_x3.onnx"), providers=["CPUExecutionProvider"])
    model = load_model(REPO / "weights" / "srcnn_x3.pth")[0]
    for x in (astronaut_bicubic, astronaut_bicubic[..., :97, :131]):  # any height and width
        ours = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(ours, model.super_resolve(x).numpy(), atol=1e-4, rtol=0)


def test_onnx_export_of_fsrcnn_round_trips(tmp_path):
    import onnxruntime
    torch.manual_seed(0)
    model = build_model("fsrcnn", scale=3).eval()
    torch.nn.init.normal_(model.deconv.weight, std=0.05)  # the paper's 0.001 init would hide errors
    export_onnx(model, tmp_path / "fsrcnn.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "fsrcnn.onnx"), providers=["CPUExecutionProvider"])
    x = torch.from_numpy(y_channel(skimage_data.coffee()[:100, :151]) / 255).float()[None, None]
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], model(x).numpy(), atol=1e-4, rtol=0)


def test_export_without_onnx_is_a_clean_error(tmp_path):
    # A sitecustomize that hides onnxscript, as on a machine with only requirements.txt installed.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['onnxscript'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, str(REPO / "test.py"), "--export-onnx", tmp_path / "x.onnx"],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "onnxscript is not installed" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "x.onnx").exists()


def test_tiled_4000x3000_photo_stays_under_2_gb(tmp_path):
    """test.py on a 12-megapixel image with --tile 512; untiled, SRCNN's first layer alone needs 3 GB."""
    Image.fromarray(textured_image(3000, 4000, seed=7)).save(tmp_path / "big.png")
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, str(REPO / "test.py"), "--image-file",
                             tmp_path / "big.png", "--scale", "3", "--tile", "512", "--output-dir", tmp_path / "out"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mb < 2048, f"peak RSS {peak_mb:.0f} MB"
    print(f"peak RSS {peak_mb:.0f} MB")
    assert Image.open(tmp_path / "out" / "big_srcnn_x3.png").size == (3999, 3000)


def test_a_corrupt_or_stale_cached_onnx_graph_is_exported_again(tmp_path, monkeypatch, capsys):
    """The cached graph is checked against eager fp32 before use: garbage bytes, or another network's graph
    under this network's name, are replaced by a fresh export (with a warning) and the result is right."""
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model, other = build_model("9-5-5"), build_model("9-5-5")
    x = torch.rand(1, 1, 37, 41)
    eager = Upscaler(model, "eager")(x)
    Upscaler(model, "onnxruntime")
    [graph] = (tmp_path / "onnx").glob("*.onnx")
    for corrupt in ("bytes", "other network"):
        if corrupt == "bytes":
            graph.write_bytes(b"\x08\x07garbage" * 100)
        else:
            export_onnx(other, graph)
        capsys.readouterr()
        torch.testing.assert_close(Upscaler(model, "onnxruntime")(x), eager, atol=1e-4, rtol=0)
        assert f"warning: cached ONNX graph {graph}" in capsys.readouterr().err, corrupt
        Upscaler(model, "onnxruntime")
        assert "warning" not in capsys.readouterr().err  # the new export passes the check and is kept
    assert [graph] == list((tmp_path / "onnx").glob("*.onnx")) and not list(tmp_path.rglob("*.tmp"))


def test_an_export_that_does_not_match_is_an_error(tmp_path, monkeypatch):
    import inference
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model, other = build_model("9-5-5"), build_model("9-5-5")
    monkeypatch.setattr(inference, "export_onnx", lambda _, path, record: export_onnx(other, path))  # an exporter gone wrong
    with pytest.raises(inference.InferenceError, match="the exported ONNX graph .* does not match the network"):
        Upscaler(model, "onnxruntime")


@pytest.mark.parametrize("arch", ["9-5-5", "fsrcnn"])
def test_whole_image_runs_are_tiled_past_the_activation_budget(arch, monkeypatch):
    """tile=0 runs the whole image until its activations would pass ACTIVATION_BUDGET, then tiles whose
    activations fit the budget; the result is the whole-image one."""
    import inference
    torch.manual_seed(0)
    model = build_model(arch, scale=3).eval()
    upscaler, x = Upscaler(model, "eager"), torch.rand(1, 1, 90, 70)
    whole = upscaler(x)
    assert upscaler.auto_tile(x.shape) == 0
    per_pixel = inference.activation_bytes_per_pixel(upscaler.model)
    monkeypatch.setattr(tiles, "ACTIVATION_BUDGET", 40 * 40 * per_pixel)
    tile = upscaler.auto_tile(x.shape)
    assert 0 < tile and (tile + 2 * model.halo) ** 2 * per_pixel <= tiles.ACTIVATION_BUDGET
    calls = []
    monkeypatch.setattr(upscaler, "run", lambda part: calls.append(part.shape) or model.super_resolve(part))
    torch.testing.assert_close(upscaler(x), whole, atol=1e-5, rtol=0)
    assert len(calls) > 1 and all(h * w * per_pixel <= tiles.ACTIVATION_BUDGET for *_, h, w in calls)


def test_default_run_on_a_large_input_stays_within_the_activation_budget(tmp_path):
    """test.py without --tile on a 200x200 --low-res input at x3, with a wide SRCNN (512 then 32 filters;
    small kernels, so it is quick): untiled, its activations over the 600x600 output grow the process by
    1.5 GB; with a 64 MB budget (lowered from the default to keep the test small) by under 500 MB,
    whatever the imports and images take."""
    torch.manual_seed(0)
    torch.save({"model": SRCNN(3, 1, 3, n1=512, n2=32).state_dict(), "meta": {"scale": 3}}, tmp_path / "w.pth")
    Image.fromarray(textured_image(200, 200)).save(tmp_path / "lr.png")
    measure = ("import resource, runpy, sys; sys.path.insert(0, sys.argv[1]); import tiles; "
               "tiles.ACTIVATION_BUDGET = 64 << 20; peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
               "before = peak(); sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
               "print((peak() - before) // 1024)")
    result = subprocess.run([sys.executable, "-c", measure, str(REPO), str(REPO / "test.py"), "--image-file",
                             tmp_path / "lr.png", "--low-res", "--weights-file", tmp_path / "w.pth",
                             "--inference-path", "eager", "--output-dir", tmp_path / "out"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    grown_mb = int(result.stdout.strip().splitlines()[-1])
    assert grown_mb < 500, f"grew by {grown_mb} MB"
    print(f"grew by {grown_mb} MB")
    assert load_image(tmp_path / "out" / "lr_srcnn_x3.png").shape == (600, 600, 3)
