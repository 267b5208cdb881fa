"""The ONNX graph path: a shipped file's graph beside it is what a CPU run takes without importing PyTorch,
with the same output as PyTorch; graphs that do not belong to their weights, or do not compute what
they record, are not used; auto's choice follows the measured rates, PyTorch's import included."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, need, textured_image
from PIL import Image

import path_choice
from evaluate import evaluate_dataset
from graphs import GraphError, open_graph, ready_graph
from hub import file_sha256, read_manifest
from utils import load_image, rgb2ycbcr, to_uint8, upscale_bicubic, y_channel, ycbcr2rgb

SHIPPED = ["srcnn_x3.pth", "fsrcnn_x3.pth", "srcnn_real_x3.pth"]


def imported_modules(*args: object) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run test.py with -X importtime; (the result, the modules it imported)."""
    result = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "test.py"), *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    return result, set(re.findall(r"^import time:.*\|\s+(\S+)$", result.stderr, re.MULTILINE))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_file_has_its_checked_graph_beside_it(name):
    weights = REPO / "weights" / name
    graph = ready_graph(weights, 3)
    assert graph is not None and graph.path == weights.with_suffix(".onnx")
    assert graph.record["weights_sha256"] == file_sha256(weights) == read_manifest()[name]["sha256"]
    assert read_manifest()[name]["graph_sha256"] == file_sha256(graph.path)


def test_a_cpu_run_on_a_shipped_graph_skips_pytorch_and_gives_pytorchs_output(tmp_path):
    Image.fromarray(textured_image(40, 56)).save(tmp_path / "lr.png")
    common = ["--image-file", tmp_path / "lr.png", "--low-res", "--scale", 3, "--weights-file", "weights/fsrcnn_x3.pth"]
    result, modules = imported_modules(*common, "--inference-path", "onnxruntime", "--device", "cpu",
                                       "--output-dir", tmp_path / "graph")
    assert result.returncode == 0, result.stderr
    assert "onnxruntime" in modules and not modules & {"torch", "numpy.random", "importlib.metadata"}  # docs/speed.md
    result, modules = imported_modules(*common, "--inference-path", "eager", "--output-dir", tmp_path / "eager")
    assert result.returncode == 0 and "torch" in modules
    graph, eager = (load_image(tmp_path / out / "lr_fsrcnn_x3.png").astype(int) for out in ("graph", "eager"))
    # ONNX Runtime's kernels may round a Y value a level the other way, which moves an RGB value by up to 2
    assert graph.shape == (120, 168, 3) and np.abs(graph - eager).max() <= 2 and (graph != eager).mean() < 1e-3
    assert np.abs(eager - before_the_lean_path(tmp_path / "lr.png")).max() <= 1


def before_the_lean_path(path) -> np.ndarray:
    """test.py's output as it was computed before the graph path: eager PyTorch on Y, then the YCbCr round
    trip in float64 (rgb2ycbcr of the bicubic image, Y replaced, ycbcr2rgb, rounded)."""
    import torch
    from models import load_model
    lr = load_image(path)
    model = load_model(REPO / "weights" / "fsrcnn_x3.pth")[0]
    with torch.no_grad():
        y = model.super_resolve(torch.from_numpy(y_channel(lr) / 255).float()[None, None]).clamp(0, 1)[0, 0].numpy()
    ycbcr = rgb2ycbcr(upscale_bicubic(lr, 3))
    ycbcr[..., 0] = to_uint8(y.astype(np.float64) * 255)
    return to_uint8(ycbcr2rgb(ycbcr)).astype(int)


@pytest.mark.parametrize("name", sorted(read_manifest()))
def test_every_shipped_graph_scores_what_the_manifest_says(data, name):
    """What test.py now runs the shipped files on gives their published Set5 PSNR (under their blur)."""
    entry = read_manifest()[name]
    scale = entry["scale"]
    graph = ready_graph(REPO / "weights" / name, scale)
    mean = evaluate_dataset(graph, need(data / "Set5" / f"x{scale}"), scale, entry.get("color", "y"),
                            entry.get("blur_sigma", 0.0))["mean"]
    assert mean["psnr"] == pytest.approx(entry["benchmarks"]["Set5"]["psnr"], abs=0.01)


@pytest.mark.parametrize("fault", ["other weights", "garbage", "wrong output"])
def test_a_graph_that_is_not_its_weights_is_reported_and_not_used(tmp_path, capsys, fault):
    weights = tmp_path / "srcnn_x3.pth"
    shutil.copy(REPO / "weights" / "srcnn_x3.pth", weights)
    graph = weights.with_suffix(".onnx")
    if fault == "other weights":
        shutil.copy(REPO / "weights" / "srcnn_x2.onnx", graph)
    elif fault == "garbage":
        graph.write_bytes(b"\x08\x07garbage" * 100)
    else:
        shutil.copy(REPO / "weights" / "srcnn_x3.onnx", graph)
    if fault == "wrong output":  # the right weights' record, but the graph computes something else
        with pytest.raises(GraphError, match="does not match the network"):
            open_graph(graph, file_sha256(weights), np.zeros((1, 1, 32, 32), np.float32))
        return
    assert ready_graph(weights, 3) is None
    assert f"warning: {graph}" in capsys.readouterr().err


def test_auto_weighs_pytorchs_import_against_the_time_it_saves(tmp_path, monkeypatch):
    entry = {"rates": {"channels_last": 40.0, "onnxruntime": 10.0}, "torch_import_s": 1.5}
    assert path_choice.fastest(entry) == "channels_last"
    assert path_choice.graph_pays(entry, 2_000_000)  # one 1080p frame: 0.2 s on the graph, 0.05 + 1.5 s with PyTorch
    assert not path_choice.graph_pays(entry, 200_000_000)  # a big folder: the faster path pays for its import
    assert not path_choice.graph_pays({"rates": {"channels_last": 1.0}, "torch_import_s": 1.0}, 10)


def test_auto_follows_the_cached_measurement(tmp_path, monkeypatch):
    """With rates that favour channels_last by far, a small run still takes the graph (PyTorch's import
    costs more than it saves) and a --dataset run takes PyTorch; a first run measures and caches."""
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path / "cache"))
    Image.fromarray(textured_image(30, 30)).save(tmp_path / "lr.png")
    args = ["--image-file", tmp_path / "lr.png", "--low-res", "--weights-file", "weights/fsrcnn_x3.pth",
            "--output-dir", tmp_path / "out", "--device", "cpu"]
    result, modules = imported_modules(*args)  # first use: measured, PyTorch imported to measure it
    assert result.returncode == 0, result.stderr
    assert "torch" in modules
    cache = json.loads((tmp_path / "cache" / "inference_paths.json").read_text())
    [(key, entry)] = cache.items()
    assert json.loads(key)["network"]["model"] == "fsrcnn" and set(entry["rates"]) == {"channels_last", "onnxruntime"}
    cache[key] = {"rates": {"channels_last": 1000.0, "onnxruntime": 1.0}, "torch_import_s": 1.0}
    (tmp_path / "cache" / "inference_paths.json").write_text(json.dumps(cache))
    result, modules = imported_modules(*args)
    assert result.returncode == 0 and not modules & {"torch", "numpy.random", "importlib.metadata"}  # 8 ms on the graph
    cache[key]["torch_import_s"] = 0.0
    (tmp_path / "cache" / "inference_paths.json").write_text(json.dumps(cache))
    result, modules = imported_modules(*args)
    assert result.returncode == 0 and "torch" in modules  # now PyTorch's path finishes first


def test_fsrcnn_weights_without_a_scale_get_a_graph_per_scale(tmp_path, monkeypatch):
    """A plain FSRCNN state dict is built for --scale: its cached graph at x3 is not used at x2."""
    import torch
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path / "cache"))
    state = torch.load(REPO / "weights" / "fsrcnn_x3.pth", weights_only=True)["model"]
    del state["deconv.weight"], state["deconv.bias"]  # the deconvolution is what differs between scales
    torch.manual_seed(0)
    state |= {"deconv.weight": torch.randn(56, 1, 9, 9) * 1e-3, "deconv.bias": torch.zeros(1)}
    torch.save(state, tmp_path / "plain.pth")
    Image.fromarray(textured_image(20, 24)).save(tmp_path / "lr.png")
    for scale in (3, 2, 3):
        result = subprocess.run([sys.executable, str(REPO / "test.py"), "--image-file", tmp_path / "lr.png", "--low-res",
                                 "--scale", str(scale), "--weights-file", tmp_path / "plain.pth", "--inference-path",
                                 "onnxruntime", "--output-dir", tmp_path / "out"], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert load_image(tmp_path / "out" / f"lr_fsrcnn_x{scale}.png").shape == (20 * scale, 24 * scale, 3)
    assert len(list((tmp_path / "cache" / "onnx").glob("weights-*.onnx"))) == 2


def test_an_unusable_cache_costs_a_warning_not_the_run(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path / "file" / "cache"))
    Image.fromarray(textured_image(20, 24)).save(tmp_path / "lr.png")
    result = subprocess.run([sys.executable, str(REPO / "test.py"), "--image-file", tmp_path / "lr.png", "--low-res",
                             "--weights-file", "weights/fsrcnn_x3.pth", "--device", "cpu", "--output-dir", tmp_path / "out"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "warning: the inference-path measurement is not cached" in result.stderr
    assert (tmp_path / "out" / "lr_fsrcnn_x3.png").exists()


@pytest.mark.parametrize("content", ["[]", "{not json", '{"key": {"rates": {}}}'])
def test_a_malformed_measurement_cache_is_measured_again(tmp_path, monkeypatch, content):
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path))
    monkeypatch.setattr(path_choice, "_busy", lambda: False)
    (tmp_path / "inference_paths.json").write_text(content)
    config = {"model": "fsrcnn"}
    assert path_choice.cached_rates(config) is None
    path_choice.store_rates(config, {"onnxruntime": 2.0, "channels_last": 1.0}, 1.0)
    assert path_choice.fastest(path_choice.cached_rates(config)) == "onnxruntime"


def test_a_measurement_taken_on_a_busy_machine_is_taken_again_once_it_is_quiet(tmp_path, monkeypatch):
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path))
    config = {"model": "srcnn"}
    monkeypatch.setattr(path_choice, "_busy", lambda: True)
    path_choice.store_rates(config, {"onnxruntime": 2.0, "channels_last": 1.0}, 1.0)
    assert path_choice.cached_rates(config)["busy"]  # still busy: the measurement stands
    monkeypatch.setattr(path_choice, "_busy", lambda: False)
    assert path_choice.cached_rates(config) is None


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnns_exported_form_is_its_network_to_the_bit(scale):
    """The graph's PReLU as max(x, a*x), with the channels of slope over 1 negated where made and read,
    computes super_resolve exactly: for the shipped slopes (-1.9 to 2.7) and for slopes set below 0,
    between 0 and 1, at 1 and over 1 on purpose."""
    import torch
    from inference import _Inference
    from models import load_model
    model = load_model(REPO / "weights" / f"fsrcnn_x{scale}.pth")[0]
    x = torch.rand(1, 1, 23, 29, generator=torch.Generator().manual_seed(0))
    for trial in range(2):
        if trial:
            with torch.no_grad():
                for prelu in (m for m in model.modules() if isinstance(m, torch.nn.PReLU)):
                    prelu.weight.copy_(torch.tensor([-0.7, 0.3, 1.0, 1.8]).repeat(len(prelu.weight))[:len(prelu.weight)])
        with torch.no_grad():
            assert torch.equal(_Inference(model)(x), model.super_resolve(x)), trial


def test_package_versions_read_from_dist_info_agree_with_importlib_metadata():
    from importlib import metadata
    for package in ("torch", "onnxruntime", "numpy"):
        assert path_choice._version(package) == metadata.version(package)
    assert path_choice._version("no-such-package-here") == "none"


def test_a_graph_checked_on_the_old_example_input_is_refused_as_out_of_date(tmp_path):
    """A graph exported before example_input changed (its record says no version) would fail its check as
    "does not match the network"; it is named as out of date instead, with how to export it again."""
    from inference import export_onnx, graph_record
    from models import load_model
    model, meta = load_model(REPO / "weights" / "fsrcnn_x3.pth")
    record = graph_record(model, meta)
    export_onnx(model, tmp_path / "new.onnx", record)
    assert open_graph(tmp_path / "new.onnx").record["example_input"] == 2
    del record["example_input"]
    export_onnx(model, tmp_path / "old.onnx", record)
    with pytest.raises(GraphError, match="older version of this project.*export it again"):
        open_graph(tmp_path / "old.onnx")
