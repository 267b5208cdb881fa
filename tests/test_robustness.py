"""The robustness table (#23): OpenCV's dnn_superres peers as a user runs them, any method scored by
evaluate.py's one path, and benchmarks/robustness.py end to end on a tiny folder."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from conftest import REPO, assert_clean_error, need, run_module, textured_image
from PIL import Image

from degradations import Degradation, apply
from evaluate import bicubic_method, evaluate_method, evaluate_pairs, network_method
from inference import Upscaler
from models import load_model
from peers import OpenCVPeer, PeerError
from utils import load_image, psnr, upscale_bicubic, y_channel


@pytest.mark.parametrize("name, scale, graph", [("fsrcnn", 3, "FSRCNN_x3.pb"), ("espcn", 2, "ESPCN_x2.pb"),
                                                ("fsrcnn-small", 4, "FSRCNN-small_x4.pb")])
def test_peer_gives_what_cv2_gives_a_user(peers, name, scale, graph):
    """RGB in, RGB out, the size `scale` times the input's; exactly cv2's BGR result, channels reversed."""
    import cv2
    lr = textured_image(30, 40, seed=scale)
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(peers / graph))
    sr.setModel(name.split("-")[0], scale)
    out = OpenCVPeer(peers, name, scale)(lr)
    assert out.shape == (30 * scale, 40 * scale, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, sr.upsample(lr[..., ::-1].copy())[..., ::-1])
    assert not np.array_equal(out, upscale_bicubic(lr, scale))  # a network ran, not a resize


def test_peer_on_gray_returns_gray_as_from_a_three_channel_read(peers):
    """A gray file reaches cv2 as three equal channels (cv2.imread); the peer gives it back gray."""
    import cv2
    gray = textured_image(30, 40, channels=1)
    out = OpenCVPeer(peers, "espcn", 3)(gray)
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(peers / "ESPCN_x3.pb"))
    sr.setModel("espcn", 3)
    expected = sr.upsample(np.repeat(gray[..., None], 3, axis=2))
    assert out.shape == (90, 120) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected[..., 0])


def test_peer_errors_are_one_line_and_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(PeerError, match=r"ESPCN_x3\.pb: no such file"):
        OpenCVPeer(tmp_path, "espcn", 3)
    with pytest.raises(PeerError, match="unknown OpenCV peer 'edsr'"):
        OpenCVPeer(tmp_path, "edsr", 3)
    (tmp_path / "FSRCNN_x2.pb").write_bytes(b"not a graph")
    pytest.importorskip("cv2.dnn_superres")
    with pytest.raises(PeerError, match=r"FSRCNN_x2\.pb: not a readable dnn_superres graph") as error:
        OpenCVPeer(tmp_path, "fsrcnn", 2)
    assert "\n" not in str(error.value)
    monkeypatch.setitem(sys.modules, "cv2", None)  # as where OpenCV is not installed
    with pytest.raises(PeerError, match="pip install opencv-contrib-python-headless"):
        OpenCVPeer(tmp_path, "fsrcnn", 2)


def pairs_of(images: list[np.ndarray], scale: int, how: Degradation) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(f"im{i}", hr, apply(hr, scale, how)) for i, hr in enumerate(images)]


@pytest.mark.parametrize("weights_file, with_ms_ssim", [("srcnn_x3.pth", True), ("fsrcnn_x3.pth", False),
                                                        ("srcnn_rgb_x3.pth", False)])
def test_a_network_scored_as_a_method_gets_evaluate_pairs_numbers_exactly(weights_file, with_ms_ssim):
    """RGB and gray images; Y and RGB networks; SRCNN (reads bicubic) and FSRCNN (reads LR); MS-SSIM once
    (it takes seconds even on small images)."""
    images = [textured_image(60, 66, seed=1), textured_image(57, 72, seed=2, channels=1)]
    pairs = pairs_of(images, 3, Degradation("cv2-cubic", jpeg_quality=75))
    model, meta = load_model(REPO / "weights" / weights_file)
    upscaler, color = Upscaler(model, "eager"), meta.get("color", "y")
    expected = evaluate_pairs(upscaler, pairs, 3, color, with_ms_ssim=with_ms_ssim)
    got = evaluate_method(network_method(upscaler, 3, color), pairs, 3, with_ms_ssim=with_ms_ssim)
    bicubic = evaluate_method(bicubic_method(3), pairs, 3, with_ms_ssim=with_ms_ssim)
    assert list(got["mean"]) == ["psnr", "ssim", "ms_ssim"][:3 if with_ms_ssim else 2]
    for key in got["mean"]:
        assert [row[key] for row in got["images"]] == [row[key] for row in expected["images"]]
        assert [row[key] for row in bicubic["images"]] == [row[f"bicubic_{key}"] for row in expected["images"]]
    assert got["mean"]["psnr"] == expected["mean"]["psnr"] and got["scale"] == 3


def test_bicubic_on_matlab_lr_is_the_published_set5_x3_number(data):
    """degradations' MATLAB kernel makes the shipped LR files exactly, and bicubic_method scores them as
    the published per-image table (baby 33.90, bird 32.57 dB; the set's mean is 30.39)."""
    folder = need(data / "Set5" / "x3")
    reference = json.loads((data / "reference_psnr.json").read_text())["Set5_x3"]["Bicubic"]["psnr_per_image"]
    pairs = []
    for stem in ("img_001_SRF_3", "img_002_SRF_3"):
        hr, shipped = load_image(folder / f"{stem}_HR.png"), load_image(folder / f"{stem}_LR.png")
        lr = apply(hr, 3, Degradation("matlab"))
        np.testing.assert_array_equal(lr, shipped)
        pairs.append((stem, hr, lr))
    rows = evaluate_method(bicubic_method(3), pairs, 3)["images"]
    np.testing.assert_allclose([row["psnr"] for row in rows], reference[:2], atol=0.01)


def test_scores_are_against_the_hr_image_and_at_its_size():
    hr = textured_image(48, 60, seed=3)
    lr = apply(hr, 3, Degradation("cv2-area"))
    oracle = evaluate_method(lambda _: hr, [("a", hr, lr)], 3)["mean"]
    assert oracle["psnr"] == float("inf") and oracle["ssim"] == 1.0  # the HR itself: a perfect score
    nearest = np.repeat(np.repeat(lr, 3, axis=0), 3, axis=1)
    score = evaluate_method(lambda _: nearest, [("a", hr, lr)], 3)["mean"]["psnr"]
    assert score == psnr(y_channel(hr), y_channel(nearest), 3)
    with pytest.raises(ValueError, match="an output of 20x16 cannot be scored against its 60x48 HR image"):
        evaluate_method(lambda x: x, [("a", hr, lr)], 3)  # an output at the LR size is not compared with anything


def test_peer_scores_against_hr_not_its_input(peers):
    hr = textured_image(48, 60, seed=4)
    lr = apply(hr, 3, Degradation("cv2-cubic"))
    peer = OpenCVPeer(peers, "espcn", 3)
    score = evaluate_method(peer, [("a", hr, lr)], 3)["mean"]["psnr"]
    assert score == psnr(y_channel(hr), y_channel(peer(lr)), 3)
    assert score != psnr(y_channel(upscale_bicubic(lr, 3)), y_channel(peer(lr)), 3)


def test_hr_images_of_a_benchmark_folder_and_a_plain_one(tmp_path):
    from benchmarks.robustness import hr_images
    (tmp_path / "bench" / "x3").mkdir(parents=True)
    Image.fromarray(textured_image(49, 61)).save(tmp_path / "bench" / "x3" / "a_HR.png")
    Image.fromarray(textured_image(16, 20)).save(tmp_path / "bench" / "x3" / "a_LR.png")
    (tmp_path / "plain").mkdir()
    Image.fromarray(textured_image(50, 50, channels=1)).save(tmp_path / "plain" / "b.png")
    assert [(name, hr.shape) for name, hr in hr_images(tmp_path / "bench", 3)] == [("a", (48, 60, 3))]
    assert [(name, hr.shape) for name, hr in hr_images(tmp_path / "plain", 4)] == [("b", (48, 48))]


def test_script_end_to_end_on_a_tiny_folder(tmp_path):
    """Two images, x3, two degradations; srcnn-real's weights and the peers' graphs absent: "-" cells,
    one warning each. The JSON's numbers are evaluate_method's on the same LR; * marks exactly the
    cells below bicubic."""
    (tmp_path / "set").mkdir()
    images = [textured_image(48, 60, seed=5), textured_image(54, 51, seed=6)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "set" / f"im{i}.png")
    (tmp_path / "weights").mkdir()
    shutil.copy(REPO / "weights" / "srcnn_x3.pth", tmp_path / "weights")
    out = run_module("benchmarks.robustness", "--data", tmp_path, "--sets", "set", "--scale", 3,
                     "--degradations", "matlab", "cv2-cubic+jpeg75", "--methods", "bicubic", "opencv-espcn", "srcnn",
                     "srcnn-real", "--peers", tmp_path / "none", "--weights-dir", tmp_path / "weights",
                     "--output-dir", tmp_path / "results", timeout=120)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "srcnn_real_x3.pth" in warnings[1] and "ESPCN_x3.pb" in warnings[0]
    report = json.loads((tmp_path / "results" / "robustness.json").read_text())
    cells = report["results"]["set"]["x3"]
    assert report["settings"]["device"] in ("cpu", "cuda")  # what --device auto resolved to, not "auto"
    assert list(cells) == ["matlab", "cv2-cubic+jpeg75"] and list(cells["matlab"]) == ["bicubic", "srcnn"]
    upscaler = Upscaler(load_model(REPO / "weights" / "srcnn_x3.pth")[0], "eager")
    for how in ("matlab", "cv2-cubic+jpeg75"):
        pairs = pairs_of(images, 3, Degradation.parse(how))
        assert cells[how]["srcnn"]["psnr"] == evaluate_method(network_method(upscaler, 3), pairs, 3)["mean"]["psnr"]
        assert cells[how]["bicubic"]["ssim"] == evaluate_method(bicubic_method(3), pairs, 3)["mean"]["ssim"]
    table = (tmp_path / "results" / "robustness.md").read_text()
    assert report["command"] in table.splitlines()[3] and "--scale 3" in report["command"]
    for how, cell in cells.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {how} |")).split(" | ")
        star = "*" if cell["srcnn"]["psnr"] < cell["bicubic"]["psnr"] else ""
        assert row[1:] == [f"{cell['bicubic']['psnr']:.2f} / {cell['bicubic']['ssim']:.4f}", "-",
                           f"{cell['srcnn']['psnr']:.2f} / {cell['srcnn']['ssim']:.4f}{star}", "- |"]


def test_cell_counts_read_the_acceptance_off_the_table():
    """Per network: cells above bicubic and above the better OpenCV network, each with its smallest margin;
    a cell where a compared method was not run is left out of that count, not counted as a win."""
    from benchmarks.robustness import markdown

    def cell(**psnrs):
        return {method.replace("_", "-"): {"psnr": value, "ssim": 0.5} for method, value in psnrs.items()}
    results = {"A": {"x2": {"matlab": cell(bicubic=30.0, opencv_fsrcnn=31.0, opencv_espcn=31.5, srcnn_real=32.0),
                            "cv2-cubic": cell(bicubic=30.0, opencv_fsrcnn=31.0, opencv_espcn=30.5, srcnn_real=30.25)}},
               "B": {"x3": {"matlab": cell(bicubic=28.0, srcnn_real=27.9)}}}
    report = {"command": "python -m benchmarks.robustness", "images": {"A": {"x2": 1}, "B": {"x3": 1}}, "results": results,
              "settings": {"methods": ["bicubic", "opencv-fsrcnn", "opencv-espcn", "srcnn-real"], "inference_path": "eager"}}
    rows = markdown(report).split("## Cell counts")[1].splitlines()
    assert "| srcnn-real | 2 of 3 (-0.10, B x3 matlab) | 1 of 2 (-0.75, A x2 cv2-cubic) |" in rows
    assert not any(line.startswith(("| bicubic", "| opencv")) for line in rows)
    report["settings"]["methods"] = ["bicubic", "opencv-espcn", "srcnn-real"]  # one peer: the bar is that one
    assert "| srcnn-real | 2 of 3 (-0.10, B x3 matlab) | 1 of 2 (-0.25, A x2 cv2-cubic) |" in markdown(report).splitlines()
    report["settings"]["methods"] = ["bicubic", "srcnn-real"]  # no peer run: nothing to count against
    assert "| srcnn-real | 2 of 3 (-0.10, B x3 matlab) | - |" in markdown(report).splitlines()


def test_script_errors_are_one_line(tmp_path):
    bad = run_module("benchmarks.robustness", "--degradations", "matlab+blurry", "--output-dir", tmp_path)
    assert bad.returncode == 2 and "not a degradation" in bad.stderr
    missing = run_module("benchmarks.robustness", "--data", tmp_path, "--sets", "nowhere", "--scale", 3,
                         "--methods", "bicubic", "--output-dir", tmp_path / "results", timeout=120)
    assert_clean_error(missing, "nowhere")


def test_the_repo_table_is_written_whole_or_not_at_all(tmp_path):
    """The default --output-dir is results/, the tracked table: a run short of it (a graph missing, or a
    subset of the rows and columns) is refused before any scoring, and the table stays as it was."""
    table = REPO / "results" / "robustness.json"
    before = table.read_bytes()
    no_graph = run_module("benchmarks.robustness", "--peers", tmp_path / "none", timeout=120)
    assert_clean_error(no_graph, str(tmp_path / "none" / "FSRCNN_x2.pb"), "results/robustness.* is the repo's full table")
    subset = run_module("benchmarks.robustness", "--scale", 3, "--methods", "bicubic", timeout=120)
    assert_clean_error(subset, "--scale, --methods not the default", "another --output-dir")
    assert table.read_bytes() == before
