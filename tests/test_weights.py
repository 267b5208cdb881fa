"""Weights from a URL (checked against a sha256, cached once) and the layouts other SRCNN repos publish.
The server is a local one on 127.0.0.1 started by the test: nothing leaves the machine."""
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_clean_error, run, run_module, textured_image
from PIL import Image
from torch import nn

from downloads import download_weights
from models import WeightsError, build_model, load_model


@pytest.fixture
def server(tmp_path):
    """Serves {path: bytes}; '/cut/...' declares the full length but sends half; '/slow/...' sends one byte
    every 0.2 s (for at most 30 s, so no thread outlives a test run by long). Counts requests."""
    files, hits = {}, []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = files.get(self.path.removeprefix("/cut").removeprefix("/slow"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path.startswith("/slow"):
                self.trickle(body[:150])
            else:
                self.wfile.write(body[: len(body) // 2] if self.path.startswith("/cut") else body)

        def trickle(self, body):
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:  # the client gave up: what the test wants
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files, hits
    httpd.shutdown()


@pytest.fixture
def weights_bytes(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.pth"
    torch.save({"model": build_model().state_dict(), "meta": {"scale": 3}}, path)
    return path.read_bytes()


def test_download_is_verified_and_cached_once(server, weights_bytes, tmp_path):
    base, files, hits = server
    files["/srcnn_x3.pth"] = weights_bytes
    digest = hashlib.sha256(weights_bytes).hexdigest()
    cache = tmp_path / "cache"
    path = download_weights(f"{base}/srcnn_x3.pth", digest, cache, allow_http=True)
    assert path.read_bytes() == weights_bytes and path.parent == cache
    assert download_weights(f"{base}/srcnn_x3.pth", digest, cache, allow_http=True) == path
    assert hits == ["/srcnn_x3.pth"]  # the second call came from the cache
    load_model(path)


def test_bad_downloads_leave_nothing_in_the_cache(server, weights_bytes, tmp_path):
    base, files, _ = server
    files["/w.pth"] = weights_bytes
    digest = hashlib.sha256(weights_bytes).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        download_weights(f"{base}/w.pth", "0" * 64, cache, allow_http=True)
    with pytest.raises(WeightsError, match="cut short|download failed"):
        download_weights(f"{base}/cut/w.pth", digest, cache, allow_http=True)
    with pytest.raises(WeightsError, match="only https"):
        download_weights(f"{base}/w.pth", digest, cache)
    with pytest.raises(WeightsError, match="no sha256"):
        download_weights(f"{base}/w.pth", None, cache, allow_http=True)
    with pytest.raises(WeightsError, match="download failed"):
        download_weights(f"{base}/missing.pth", digest, cache, allow_http=True)
    assert not cache.exists() or not any(cache.iterdir())


def test_a_corrupt_cached_download_is_fetched_again(server, weights_bytes, tmp_path):
    base, files, hits = server
    files["/srcnn_x3.pth"] = weights_bytes
    digest = hashlib.sha256(weights_bytes).hexdigest()
    cache = tmp_path / "cache"
    path = download_weights(f"{base}/srcnn_x3.pth", digest, cache, allow_http=True)
    path.write_bytes(weights_bytes[:100] + b"flipped" + weights_bytes[107:])  # same size, other bytes
    assert download_weights(f"{base}/srcnn_x3.pth", digest, cache, allow_http=True) == path
    assert hits == ["/srcnn_x3.pth"] * 2  # the cached copy was hashed, found wrong and fetched again
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    load_model(path)


def test_a_trickling_download_stops_at_its_deadline(server, weights_bytes, tmp_path):
    """A server sending a byte every 0.2 s never lets a read time out; the deadline still ends the download."""
    base, files, _ = server
    files["/srcnn_x3.pth"] = weights_bytes
    cache = tmp_path / "cache"
    start = time.monotonic()
    with pytest.raises(WeightsError, match="srcnn_x3.pth: download took longer than 2 s"):
        download_weights(f"{base}/slow/srcnn_x3.pth", hashlib.sha256(weights_bytes).hexdigest(), cache,
                         allow_http=True, deadline=2)
    assert time.monotonic() - start < 6
    assert not any(cache.iterdir())


def test_test_script_takes_a_url(server, weights_bytes, tmp_path, monkeypatch):
    base, files, _ = server
    files["/srcnn_x3.pth"] = weights_bytes
    monkeypatch.setenv("SRCNN_CACHE", str(tmp_path / "cache"))
    Image.fromarray(textured_image(60, 60)).save(tmp_path / "a.png")
    digest = hashlib.sha256(weights_bytes).hexdigest()
    args = ["--image-file", tmp_path / "a.png", "--output-dir", tmp_path / "out", "--weights-file", f"{base}/srcnn_x3.pth"]
    result = run("test.py", *args, "--sha256", digest, "--allow-http")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a_srcnn_x3.png").exists()
    assert_clean_error(run("test.py", *args, "--sha256", "1" * 64, "--allow-http"), "sha256 mismatch")


class ForeignSRCNN(nn.Module):
    """The module layout of other PyTorch SRCNN repos: conv1/conv2/conv3, padding f // 2 or none."""

    def __init__(self, padding: bool):
        super().__init__()
        p = (lambda f: f // 2) if padding else (lambda f: 0)
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 64, 9, padding=p(9)), nn.Conv2d(64, 32, 5, padding=p(5)), nn.Conv2d(32, 1, 5, padding=p(5))

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


@pytest.mark.parametrize("padded", [True, False])
def test_foreign_state_dicts_load_and_compute_the_same(tmp_path, padded):
    torch.manual_seed(1)
    theirs = ForeignSRCNN(padded)
    torch.save(theirs.state_dict(), tmp_path / "theirs.pth")
    ours, _ = load_model(tmp_path / "theirs.pth", padding="same" if padded else "valid")
    x = torch.rand(1, 1, 40, 44)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
        if not padded:  # full-size output: the valid network on a replicate-padded input
            torch.testing.assert_close(ours.super_resolve(x), theirs(F.pad(x, [8] * 4, mode="replicate")))


def test_train_all_recipes_name_the_files_preprocess_writes(tmp_path):
    """weights/train_all.py finds each recipe's patch file by preprocess.py's default name."""
    from conftest import REPO
    from weights.train_all import RECIPES, patch_file
    images = tmp_path / "T91"  # preprocess.py names its output after the folder
    images.mkdir()
    Image.fromarray(textured_image(66, 66)).save(images / "a.png")
    for name in ("srcnn_x3", "fsrcnn_x2", "srcnn_x3_ycbcr", "srcnn_x4_rgb"):
        preprocess_args = RECIPES[name][0]
        result = run("preprocess.py", "--images", images, *preprocess_args, "--workers", 1, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        written = sorted((tmp_path / "output").glob("*.h5"))
        assert written == [patch_file(preprocess_args, tmp_path / "output")], (name, written)
        written[0].unlink()
    for name, (_, train_args) in RECIPES.items():  # every --init it continues from ships, trained with that padding
        if "--init" in train_args:
            shipped = load_model(REPO / train_args[train_args.index("--init") + 1])[0]
            padding = train_args[train_args.index("--padding") + 1] if "--padding" in train_args else "same"
            assert shipped.padding == padding, name


def test_archive_run_keeps_scalars_and_best_but_drops_images(tmp_path):
    """weights/archive_run.py: the history keeps the curves and best.pth, not the image summaries."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboardX import SummaryWriter
    run_dir, dest = tmp_path / "run", tmp_path / "training" / "srcnn_x3" / "cpu"
    with SummaryWriter(str(run_dir)) as writer:
        for step in range(3):
            writer.add_scalar("val/psnr", 30.0 + step, step)
            writer.add_image("val/sample", textured_image(16, 16), step, dataformats="HWC")
    torch.save({"weights": torch.ones(2)}, run_dir / "best.pth")
    torch.save({"weights": torch.ones(2)}, run_dir / "last.pth")

    part_way = run_module("weights.archive_run", run_dir, dest, "--keep-checkpoint")  # to be continued elsewhere
    assert part_way.returncode == 0, part_way.stderr
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith("events")) == ["best.pth", "last.pth"]
    result = run_module("weights.archive_run", run_dir, dest)  # the run done: its old checkpoint goes
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith("events")) == ["best.pth"]
    source, kept = (EventAccumulator(str(d), size_guidance={"images": 0}) for d in (run_dir, dest))
    source.Reload(), kept.Reload()
    assert len(source.Images("val/sample")) == 3 and kept.Tags()["images"] == []
    assert [(e.step, e.value) for e in kept.Scalars("val/psnr")] == [(0, 30.0), (1, 31.0), (2, 32.0)]

    assert_clean_error(run_module("weights.archive_run", tmp_path / "training", dest), "no best.pth")
    (run_dir / "last.pth").unlink()
    assert_clean_error(run_module("weights.archive_run", run_dir, dest, "--keep-checkpoint"), "no last.pth")


def test_loss_study_trains_every_loss_equally_then_scores_and_draws(tmp_path):
    """weights/loss_study.py end to end on tiny data: the blurred holopix patches, three losses for the same
    number of steps from the same initialisation, then the table on three sets and the crop figure."""
    import json

    import numpy as np
    from utils import degrade, load_image
    data = tmp_path / "data"
    for folder, count, size in (("SunHays80/train", 4, (130, 200)), ("SunHays80/val", 2, (96, 96))):
        (data / folder).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(textured_image(*size, seed=i)).save(data / folder / f"im{i}.png")
    for name in ("Set5", "Set14"):
        (data / name / "x3").mkdir(parents=True)
        hr = textured_image(60, 60, seed=9)
        Image.fromarray(hr).save(data / name / "x3" / "a_HR.png")
        Image.fromarray(degrade(hr, 3)[0]).save(data / name / "x3" / "a_LR.png")
    runs, results = tmp_path / "runs", tmp_path / "results"
    result = run_module("weights.loss_study", "--data", data, "--train-file", tmp_path / "p.h5", "--output-dir", runs,
                        "--results-dir", results, "--epochs", 1, "--batch-size", 4, "--losses", "mse", "psnr", "weighted",
                        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    states = {loss: torch.load(runs / loss / "last.pth", weights_only=True) for loss in ("mse", "psnr", "weighted")}
    assert {state["step"] for state in states.values()} == {2}  # 8 patches, batch 4, one epoch each
    assert all(state["meta"]["blur_sigma"] == 0.73 for state in states.values())
    table = json.loads((results / "loss_study.json").read_text())["results"]
    assert set(table) == {"SunHays80/val", "Set5/x3", "Set14/x3"}
    for scores in table.values():
        assert list(scores) == ["bicubic", "srcnn_x3.pth (T91, no blur)", "mse", "psnr", "weighted"]
        assert all(0 < s["ssim"] <= 1 and 0 < s["ms_ssim"] <= 1 and s["psnr"] > 10 for s in scores.values())
    assert table["SunHays80/val"]["mse"]["step"] == 2 and "step" not in table["SunHays80/val"]["bicubic"]
    again = run_module("weights.loss_study", "--data", data, "--train-file", tmp_path / "p.h5", "--output-dir", runs,
                       "--results-dir", results, "--epochs", 2, "--batch-size", 4, "--losses", "mse")
    assert_clean_error(again, "study.json records other settings")  # a rerun never mixes two schedules
    crops = load_image(results / "loss_study_crops.png")
    assert crops.shape[1] == 5 * 192 + 4 * 4 and crops.shape[0] > 4 * 192  # 5 columns, 4 rows of 2x crops
    assert np.std(crops) > 10


def test_publish_names_its_file_without_overwriting_another():
    """Rescoring a shipped robust file keeps its name: before, it was written over fsrcnn_x3.pth."""
    from hub import WEIGHTS_DIR
    from weights.publish import output_name

    assert output_name(WEIGHTS_DIR / "fsrcnn_real_x3.pth", "fsrcnn", 0.0, 3) == "fsrcnn_real_x3.pth"
    assert output_name(Path("runs/recipes/fsrcnn_x3/best.pth"), "fsrcnn", 0.0, 3) == "fsrcnn_x3.pth"
    assert output_name(Path("runs/blur/best.pth"), "srcnn", 0.73, 3) == "srcnn_blur_x3.pth"
    assert output_name(WEIGHTS_DIR / "srcnn_x3.pth", "srcnn", 0.0, 3, "srcnn_new_x3.pth") == "srcnn_new_x3.pth"
