"""The fast inference paths: each gives eager fp32's result within 1/255 on Y, ONNX export round-trips,
and tiled inference of a 4000x3000 photo stays in bounded memory."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, run, textured_image
from PIL import Image
from skimage import data as skimage_data

from inference import Upscaler, default_inference_path, export_onnx
from models import build_model, load_model
from utils import degrade, y_channel

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
