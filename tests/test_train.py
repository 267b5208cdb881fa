import json
import socket
import subprocess
import sys
import time
import urllib.request

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import assert_clean_error, need, noisy_patches, run, run_module

from models import load_model

SMALL_T91 = ["t1.bmp", "t2.bmp", "t3.bmp", "t5.bmp", "t8.bmp", "t10.bmp", "t12.bmp", "t15.bmp", "t20.bmp", "t22.bmp",
             "t26.bmp", "t30.bmp", "t35.bmp", "t40.bmp", "t45.bmp", "tt1.bmp", "tt5.bmp", "tt10.bmp", "tt15.bmp", "tt20.bmp"]


@pytest.fixture(scope="module")
def t91_patches(tmp_path_factory):
    """Paper-preset x3 patches from 20 T91 images (about 4,700 pairs)."""
    from conftest import DATA
    folder = tmp_path_factory.mktemp("t91")
    for name in SMALL_T91:
        (folder / name).symlink_to(need(DATA / "T91" / name))
    out = folder / "t91_x3.h5"
    result = run("preprocess.py", "--images", folder, "--scale", 3, "--output", out)
    assert result.returncode == 0, result.stderr
    return out


def test_smoke_training_beats_bicubic_on_set5(data, t91_patches, tmp_path):
    """Two epochs from scratch (476 steps of 16, the paper's valid padding: half the cost of a step with
    same padding) beat bicubic on Set5 by a margin no seed comes near: seeds 1-4 score 31.22 / 31.30 /
    31.36 / 31.09 dB (bicubic 30.39), so the bar of bicubic + 0.4 dB sits 0.3 dB below the worst of them.
    (One epoch of same padding, 30.50-31.00 dB by seed, straddled a bar of bicubic + 0.3.)"""
    set5 = need(data / "Set5" / "x3")
    bicubic = json.loads((data / "reference_psnr.json").read_text())["Set5_x3"]["Bicubic"]["psnr_mean"]
    with h5py.File(t91_patches) as f:
        steps = 2 * (len(f["hr"]) // 16)
    start = time.time()
    result = run("train.py", "--train-file", t91_patches, "--eval-file", set5, "--scale", 3, "--output-dir", tmp_path,
                 "--lr", 1e-3, "--padding", "valid", "--epochs", 2, "--eval-every", 2, "--image-every", 0,
                 "--workers", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    # a guard against a run grown much longer (about 85 s on two shared cores; the machine's load moves it by tens of seconds)
    assert time.time() - start < 180
    model, meta = load_model(tmp_path / "best.pth")
    assert meta["epoch"] == 2 and meta["step"] == steps and meta["padding"] == "valid"  # the whole run, validated once
    assert meta["val_psnr"] > bicubic + 0.4, (meta["val_psnr"], bicubic)
    # test.py measures the same weights the same way, to the last digit, on train.py's arithmetic (channels_last;
    # the default ONNX Runtime path agrees within 1/255 per pixel, tests/test_inference.py)
    table = run("test.py", "--weights-file", tmp_path / "best.pth", "--dataset", set5, "--scale", 3,
                "--json", tmp_path / "t.json", "--inference-path", "channels_last")
    assert table.returncode == 0, table.stderr
    measured = json.loads((tmp_path / "t.json").read_text())["mean"]
    assert measured["psnr"] == pytest.approx(meta["val_psnr"], abs=1e-9)
    assert measured["bicubic_psnr"] == pytest.approx(bicubic, abs=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_training_beats_bicubic_and_test_py_agrees_on_cuda(data, t91_patches, tmp_path):
    """The GPU path end to end: fp16 autocast training, in-memory patches, and test.py's default CUDA
    path (fp16) measuring the result as train.py's fp32 validation does, to 0.01 dB."""
    set5 = need(data / "Set5" / "x3")
    bicubic = json.loads((data / "reference_psnr.json").read_text())["Set5_x3"]["Bicubic"]["psnr_mean"]
    result = run("train.py", "--train-file", t91_patches, "--eval-file", set5, "--scale", 3, "--output-dir", tmp_path,
                 "--lr", 1e-3, "--max-steps", 500, "--epochs", 1, "--workers", 0, "--in-memory", "--device", "cuda")
    assert result.returncode == 0, result.stderr[-2000:]
    model, meta = load_model(tmp_path / "best.pth")
    assert meta["val_psnr"] > bicubic + 0.3, (meta["val_psnr"], bicubic)
    table = run("test.py", "--weights-file", tmp_path / "best.pth", "--dataset", set5, "--scale", 3,
                "--json", tmp_path / "t.json", "--device", "cuda")
    assert table.returncode == 0, table.stderr
    assert json.loads((tmp_path / "t.json").read_text())["mean"]["psnr"] == pytest.approx(meta["val_psnr"], abs=0.01)


@pytest.fixture
def tiny_eval(tmp_path):
    from PIL import Image
    from conftest import textured_image
    folder = tmp_path / "eval"
    folder.mkdir()
    Image.fromarray(textured_image(60, 60)).save(folder / "a.png")
    return folder


def assert_same_weights(a: dict, b: dict, cut_at: int) -> None:
    """Bit-identical weights; a mismatch says how far apart and where the run was cut (a wrong replay is far
    off, a rounding difference near)."""
    for key in a["model"]:
        difference = (a["model"][key] - b["model"][key]).abs().max().item()
        assert torch.equal(a["model"][key], b["model"][key]), f"{key}: max |difference| {difference:.3g}, cut at step {cut_at}"


def test_resume_continues_exactly(tmp_path, tiny_eval):
    from PIL import Image
    train = noisy_patches(tmp_path / "tiny.h5")
    common = ["--train-file", train, "--eval-file", tiny_eval, "--batch-size", 8, "--workers", 2, "--augment",
              "--lr", 1e-3, "--lr-schedule", "cosine"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run("train.py", *common, "--epochs", 4, "--output-dir", straight).returncode == 0
    assert run("train.py", *common, "--epochs", 4, "--max-steps", 2 * 12, "--output-dir", split).returncode == 0
    first_session = torch.load(split / "last.pth", weights_only=True)["train_seconds"]
    # continued in another session: the run part-way, archived with its checkpoint (images stripped), copied back
    archived = run_module("weights.archive_run", split, tmp_path / "archived", "--keep-checkpoint")
    assert archived.returncode == 0, archived.stderr
    in_place = run("train.py", *common, "--epochs", 4, "--output-dir", split, "--resume")
    assert in_place.returncode == 0, in_place.stderr
    assert_same_weights(torch.load(straight / "last.pth", weights_only=True),
                        torch.load(split / "last.pth", weights_only=True), cut_at=2 * 12)
    split = tmp_path / "archived"  # the archived copy, resumed: the rest of the test reads its run
    resumed = run("train.py", *common, "--epochs", 4, "--output-dir", split, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "epoch 2" in resumed.stdout
    a = torch.load(straight / "last.pth", weights_only=True)
    b = torch.load(split / "last.pth", weights_only=True)
    assert a["step"] == b["step"] == 4 * 12
    assert 0 < first_session < b["train_seconds"]  # the training clock goes on across sessions
    # time-to-quality reads that clock back: every validation is on it, the first is reached at any low target
    reached = run_module("benchmarks.time_to_quality", split, "--target", -100, "--output", tmp_path / "t.json")
    assert reached.returncode == 0, reached.stderr
    record = json.loads((tmp_path / "t.json").read_text())
    assert [row["step"] for row in record["curve"]] == [12, 24, 36, 48]
    minutes = [row["minutes"] for row in record["curve"]]
    assert minutes == sorted(minutes) and record["reached"]["step"] == 12
    assert minutes[-1] == pytest.approx(b["train_seconds"] / 60, abs=0.01)
    # a target between two validations is first reached at the first row at or above it
    psnrs = [row["psnr"] for row in record["curve"]]
    target = (min(psnrs) + max(psnrs)) / 2
    first = next(row["step"] for row in record["curve"] if row["psnr"] >= target)
    assert f"(step {first})" in run_module("benchmarks.time_to_quality", split, "--target", target).stdout
    assert "100.0 dB not reached" in run_module("benchmarks.time_to_quality", split, "--target", 100).stdout
    plotted = run_module("benchmarks.plot_curves", split, "--clock", "--output", tmp_path / "clock.png")
    assert plotted.returncode == 0, plotted.stderr
    sheet = np.asarray(Image.open(tmp_path / "clock.png").convert("RGB")).astype(int)
    assert sheet.shape == (300, 420, 3) and ((sheet == (0, 0, 128)).all(axis=-1)).sum() > 20  # the navy curve
    assert_same_weights(a, b, cut_at=2 * 12)
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])


def test_a_run_resumed_without_init_keeps_the_record_of_where_it_started(tmp_path, tiny_eval):
    """--init is read at the start only; resumed without it, the next checkpoint still names it (not None),
    the record weights.reproduce reads before it continues a run."""
    shipped = Path(__file__).resolve().parent.parent / "weights" / "srcnn_x3.pth"
    common = ["--train-file", noisy_patches(tmp_path / "tiny.h5"), "--eval-file", tiny_eval, "--batch-size", 8,
              "--workers", 0, "--epochs", 2, "--output-dir", tmp_path / "run"]
    assert run("train.py", *common, "--init", shipped, "--max-steps", 12).returncode == 0
    resumed = run("train.py", *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert state["step"] == 2 * 12 and state["args"]["init"] == str(shipped)


def test_in_memory_training_equals_streaming_and_eval_every_skips_validations(tmp_path, tiny_eval):
    train = noisy_patches(tmp_path / "tiny.h5")
    common = ["--train-file", train, "--eval-file", tiny_eval, "--batch-size", 8, "--workers", 0, "--augment",
              "--lr", 1e-3, "--epochs", 4]
    streamed = run("train.py", *common, "--output-dir", tmp_path / "streamed")
    in_memory = run("train.py", *common, "--output-dir", tmp_path / "in_memory", "--in-memory", "--eval-every", 3,
                    "--image-every", 0)
    assert streamed.returncode == 0 and in_memory.returncode == 0, streamed.stderr + in_memory.stderr
    a = torch.load(tmp_path / "streamed" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "in_memory" / "last.pth", weights_only=True)
    assert a["step"] == b["step"] == 4 * 12
    assert all(torch.equal(a["model"][key], b["model"][key]) for key in a["model"])
    validated = lambda result: [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("epoch")
                                and "val PSNR" in line]
    assert validated(streamed) == ["epoch 1", "epoch 2", "epoch 3", "epoch 4"]
    assert validated(in_memory) == ["epoch 3", "epoch 4"]  # every 3rd epoch, and always the last
    assert "epoch 1: step 12," in in_memory.stdout
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logged = {}
    for name in ("streamed", "in_memory"):
        events = EventAccumulator(str(tmp_path / name), size_guidance={"images": 0})
        events.Reload()
        logged[name] = events.Tags()["images"]
    assert "val/bicubic_srcnn_hr" in logged["streamed"] and logged["in_memory"] == []  # --image-every 0: none


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_shows_the_run(tmp_path, tiny_eval):
    train = noisy_patches(tmp_path / "tiny.h5", size=33)
    run_dir = tmp_path / "run"
    result = run("train.py", "--train-file", train, "--eval-file", tiny_eval, "--batch-size", 8, "--epochs", 2,
                 "--log-every", 2, "--output-dir", run_dir, "--workers", 0)
    assert result.returncode == 0, result.stderr
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir), "--port", str(port),
                               "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tags, deadline = {}, time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as response:
                    tags = json.load(response).get(".", {})
                if "val/psnr" in tags:
                    break
            except OSError:
                pass
            time.sleep(1)
        for tag in ("train/loss", "train/psnr", "train/ssim", "train/ms_ssim", "train/lr", "val/psnr", "val/ssim"):
            assert tag in tags, (tag, sorted(tags))
        url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=.&tag=val/psnr"
        with urllib.request.urlopen(url, timeout=5) as response:
            points = json.load(response)
        assert len(points) == 2 and all(np.isfinite(p[2]) for p in points)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/images/tags", timeout=5) as response:
            images = json.load(response).get(".", {})
        assert "val/bicubic_srcnn_hr" in images and "filters/first_layer" in images
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_bad_training_inputs_are_one_line_errors(tmp_path, tiny_eval):
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["data"] = np.zeros(3)
    assert_clean_error(run("train.py", "--train-file", tmp_path / "empty.h5", "--eval-file", tiny_eval),
                       "empty.h5", "no lr or hr")
    (tmp_path / "text.h5").write_text("hello")
    assert_clean_error(run("train.py", "--train-file", tmp_path / "text.h5", "--eval-file", tiny_eval),
                       "text.h5", "not an HDF5 file")
    train = noisy_patches(tmp_path / "tiny.h5")
    assert_clean_error(run("train.py", "--train-file", train, "--eval-file", tiny_eval, "--scale", 2),
                       "made for scale 3")
    assert_clean_error(run("train.py", "--train-file", train, "--eval-file", tmp_path / "nothing"), "nothing")
    assert_clean_error(run("train.py", "--train-file", train, "--eval-file", tiny_eval, "--scale", 7), "invalid choice: 7")
    assert_clean_error(run("train.py", "--train-file", train, "--eval-file", tiny_eval, "--output-dir",
                           tmp_path / "fresh", "--resume"), "no", "last.pth")


def test_interrupt_then_resume_gives_bit_identical_weights(tmp_path, tiny_eval):
    """SIGINT mid-epoch, --resume: the same weights as an uninterrupted run, DataLoader workers included."""
    import re
    import signal
    import threading
    from conftest import REPO
    # 200 steps an epoch: a signal sent at step 20 lands mid-epoch even on a machine that runs 150 steps a second
    train = noisy_patches(tmp_path / "tiny.h5", count=1600)
    common = ["--train-file", train, "--eval-file", tiny_eval, "--batch-size", 8, "--workers", 2, "--augment",
              "--lr", 1e-3, "--epochs", 3, "--max-steps", 300]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run("train.py", *common, "--output-dir", straight).returncode == 0
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *map(str, common), "--output-dir", str(split)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while time.time() < deadline and not any(int(n) >= 20 for n in re.findall(r"(\d+)/200 \[", "".join(seen))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 128 + signal.SIGINT
    reader.join(timeout=10)
    assert "interrupted by SIGINT" in "".join(seen)
    state = torch.load(split / "last.pth", weights_only=True)
    assert 20 <= state["step"] < 200 and state["batches_done"] == state["step"]
    assert state["train_seconds"] > 0  # the cut epoch's steps are on the training clock
    resumed = run("train.py", *common, "--output-dir", split, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (torch.load(d / "last.pth", weights_only=True) for d in (straight, split))
    assert a["step"] == b["step"] == 300 and b["train_seconds"] > state["train_seconds"]
    assert_same_weights(a, b, cut_at=state["step"])


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_eval):
    train = noisy_patches(tmp_path / "tiny.h5")
    common = ["--train-file", train, "--eval-file", tiny_eval, "--batch-size", 8, "--workers", 0,
              "--output-dir", tmp_path / "run"]
    assert run("train.py", *common, "--epochs", 2).returncode == 0
    last = tmp_path / "run" / "last.pth"
    last.write_bytes(last.read_bytes()[:1000])  # a write cut short
    resumed = run("train.py", *common, "--epochs", 3, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "last.pth is unreadable" in resumed.stderr and "resumed from" in resumed.stdout
    assert "epoch 1 (+0 batches)" in resumed.stdout  # previous-last.pth was written after epoch 1
    assert torch.load(last, weights_only=True)["epoch"] == 3


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_eval):
    train = noisy_patches(tmp_path / "tiny.h5")
    result = run("train.py", "--train-file", train, "--eval-file", tiny_eval, "--batch-size", 8, "--workers", 0,
                 "--output-dir", tmp_path / "run", "--lr", 1e8, "--last-lr-ratio", 1, "--epochs", 50)
    assert_clean_error(result, "at step", "last good checkpoint")


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_checkpoint(tmp_path, tiny_eval, monkeypatch, capsys):
    import errno
    import train as train_script
    def no_space(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(train_script.torch, "save", no_space)
    train = noisy_patches(tmp_path / "tiny.h5")
    with pytest.raises(SystemExit, match=r"cannot write .*\.pth: no space left on device"):
        train_script.main(["--train-file", str(train), "--eval-file", str(tiny_eval), "--batch-size", "8",
                           "--workers", "0", "--output-dir", str(tmp_path / "run"), "--epochs", "1"])
    assert not list((tmp_path / "run").glob("*.pth*"))


def test_two_gloo_ranks_with_half_batches_match_one_process(tmp_path, tiny_eval):
    """torchrun --nproc_per_node=2 on the CPU: DDP over gloo, each rank half of the global batch."""
    train = noisy_patches(tmp_path / "tiny.h5", count=160)
    common = ["--train-file", train, "--eval-file", tiny_eval, "--batch-size", 8, "--workers", 0, "--augment",
              "--lr", 1e-3, "--epochs", 2, "--max-steps", 30]  # 20 global steps an epoch: ends mid-epoch 2
    single = run("train.py", *common, "--output-dir", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    from conftest import REPO
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(REPO / "train.py"), *map(str, common), "--output-dir", str(tmp_path / "two")],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = (torch.load(tmp_path / d / "last.pth", weights_only=True) for d in ("one", "two"))
    assert a["step"] == b["step"] == 30 and a["batches_done"] == b["batches_done"] == 10
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-5, rtol=1e-4)
    assert len(list((tmp_path / "two").glob("events.out.tfevents.*"))) == 1  # rank 0 alone logs
