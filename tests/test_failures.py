"""The README's failure table under real faults: run folders owned by one run, locks, kills of the whole
process group, full disks (a small tmpfs), read-only folders (chattr +i) and patch or validation files
that would train to nonsense. Faults that need root (mount, chattr) skip with a reason elsewhere."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from conftest import REPO, assert_clean_error, need, noisy_patches, run, run_module, start, textured_image, write_patches


@pytest.fixture
def eval_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "eval"
    folder.mkdir()
    Image.fromarray(textured_image(60, 60)).save(folder / "a.png")
    return folder


def training(train_file: Path, eval_folder: Path, output_dir: Path, *extra: object) -> list[object]:
    return ["--train-file", train_file, "--eval-file", eval_folder, "--batch-size", 8, "--workers", 0,
            "--output-dir", output_dir, *extra]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A folder that is a tmpfs of `size`: a disk that really fills up."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and mount to make a small filesystem")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made read-only: for root (whom permissions do not stop) immutable with chattr +i, as a
    read-only mount would be; for anyone else by its mode."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i failed: no way to make a folder read-only for root here")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True) if os.geteuid() == 0 else folder.chmod(0o755)


def wait_for(condition, timeout: float = 120, poll: float = 0.05) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(poll)


# ---- run folders: one run each ----

def test_a_fresh_run_never_replaces_another_runs_best(tmp_path, eval_folder):
    train, folder = noisy_patches(tmp_path / "tiny.h5"), tmp_path / "run"
    assert run("train.py", *training(train, eval_folder, folder, "--epochs", 1)).returncode == 0
    best = (folder / "best.pth").read_bytes()
    refused = run("train.py", *training(train, eval_folder, folder, "--epochs", 1, "--lr", 1))
    assert_clean_error(refused, str(folder), "best.pth", "--resume", "--overwrite")
    assert (folder / "best.pth").read_bytes() == best
    fresh = run("train.py", *training(train, eval_folder, folder, "--epochs", 1, "--seed", 5, "--overwrite"))
    assert fresh.returncode == 0, fresh.stderr
    assert (folder / "best.pth").read_bytes() != best and len(list(folder.glob("events.out.tfevents.*"))) == 1


def test_overwrite_deletes_the_old_run_only_once_the_new_inputs_are_checked(tmp_path, eval_folder):
    train, folder = noisy_patches(tmp_path / "tiny.h5"), tmp_path / "run"
    assert run("train.py", *training(train, eval_folder, folder, "--epochs", 1)).returncode == 0
    kept = sorted(p.name for p in folder.iterdir())
    few = noisy_patches(tmp_path / "few.h5", count=5)
    assert_clean_error(run("train.py", *training(few, eval_folder, folder, "--overwrite")), "fewer than one batch")
    assert_clean_error(run("train.py", *training(train, tmp_path / "typo", folder, "--overwrite")), "typo")
    assert sorted(p.name for p in folder.iterdir()) == kept


def test_train_all_refuses_an_earlier_rounds_folders_before_calibrating(tmp_path, data):
    need(data / "T91")
    (tmp_path / "srcnn_x3").mkdir()
    (tmp_path / "srcnn_x3" / "best.pth").write_bytes(b"an earlier round's")
    started = time.time()
    result = run_module("weights.train_all", "srcnn_x3", "--budget", 600, "--data", data, "--output-dir", tmp_path,
                        "--patches-dir", tmp_path)
    assert_clean_error(result, str(tmp_path / "srcnn_x3"), "--overwrite")
    assert time.time() - started < 60 and not (tmp_path / "calibration").exists()


def test_a_second_train_py_is_locked_out_of_a_running_runs_folder(tmp_path, eval_folder):
    train, folder = noisy_patches(tmp_path / "tiny.h5", count=4000), tmp_path / "run"
    first = start("train.py", *training(train, eval_folder, folder, "--epochs", 50))
    try:
        wait_for(lambda: list(folder.glob("events.out.tfevents.*")))
        second = run("train.py", *training(train, eval_folder, folder, "--epochs", 1, "--resume"))
        assert_clean_error(second, str(folder), "in use by another process", f"pid {first.pid}")
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # the second opened no log of its own
    finally:
        first.kill()
        first.wait()


def test_resume_refuses_other_settings_or_another_train_file(tmp_path, eval_folder):
    train, folder = noisy_patches(tmp_path / "tiny.h5"), tmp_path / "run"
    common = training(train, eval_folder, folder, "--lr-schedule", "cosine", "--epochs", 3)
    assert run("train.py", *common, "--max-steps", 12).returncode == 0
    other_eval = tmp_path / "other_eval"
    other_eval.mkdir()
    Image.fromarray(textured_image(60, 60, seed=1)).save(other_eval / "b.png")
    for flag, value in (("--lr", 0.5), ("--batch-size", 4), ("--seed", 9), ("--epochs", 5), ("--eval-file", other_eval),
                        ("--autocast", "bf16")):
        assert_clean_error(run("train.py", *common, flag, value, "--resume"), "--resume", flag)  # the last flag counts
    shipped = Path(__file__).resolve().parent.parent / "weights" / "srcnn_x3.pth"  # a start the run did not have
    assert_clean_error(run("train.py", *common, "--init", shipped, "--resume"), "--init None (now")
    other = noisy_patches(tmp_path / "other.h5", count=64)
    assert_clean_error(run("train.py", *training(other, eval_folder, folder, "--lr-schedule", "cosine", "--epochs", 3),
                           "--resume"), "--train-file", "other.h5")
    noisy_patches(train, count=80)  # the same path, other patches
    assert_clean_error(run("train.py", *common, "--resume"), "96 training patches (now 80)")
    noisy_patches(train, blur_sigma=0.73)  # the same path and count, made with a blur
    assert_clean_error(run("train.py", *common, "--resume"), "patches made with blur_sigma 0.0 (now 0.73)")
    noisy_patches(train, seed=1)  # the same settings and count, other patches
    assert_clean_error(run("train.py", *common, "--resume"), "other patches, with the same settings and count")
    noisy_patches(train)
    resumed = run("train.py", *common, "--resume", "--workers", 2, "--max-steps", 24)  # what may change, changed
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr


def test_resume_of_a_checkpoint_from_before_patch_settings_were_recorded(tmp_path, eval_folder):
    train, folder = noisy_patches(tmp_path / "tiny.h5"), tmp_path / "run"
    common = training(train, eval_folder, folder, "--epochs", 2)
    assert run("train.py", *common, "--max-steps", 12).returncode == 0
    state = torch.load(folder / "last.pth", weights_only=True)
    del state["meta"]["train_file_settings"], state["meta"]["train_file_digest"]
    torch.save(state, folder / "last.pth")
    noisy_patches(train, seed=1)  # unrecorded, so unchecked: the count alone was, as before
    resumed = run("train.py", *common, "--resume")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr


def test_an_empty_last_checkpoint_falls_back_to_the_previous_one(tmp_path, eval_folder):
    train, folder = noisy_patches(tmp_path / "tiny.h5"), tmp_path / "run"
    assert run("train.py", *training(train, eval_folder, folder, "--epochs", 2)).returncode == 0
    (folder / "last.pth").write_bytes(b"")  # what a rename without fsync can leave after a power cut
    resumed = run("train.py", *training(train, eval_folder, folder, "--epochs", 3, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "last.pth is unreadable (EOFError)" in resumed.stderr and "epoch 1 (+0 batches)" in resumed.stdout
    assert torch.load(folder / "last.pth", weights_only=True)["epoch"] == 3


def test_a_killed_run_keeps_its_curves_up_to_its_last_checkpoint(tmp_path, eval_folder):
    """SIGKILL (a session's end, the OOM killer) gives no chance to flush the TensorBoard log: each
    checkpoint flushes it first, so the curves reach the checkpoint a resumed run starts from (to within
    one --log-every interval: the last logged step is at most 10 before it)."""
    from run_logs import read_scalar
    train, folder = noisy_patches(tmp_path / "tiny.h5", count=400), tmp_path / "run"  # 50 steps an epoch
    proc = start("train.py", *training(train, eval_folder, folder, "--epochs", 100, "--eval-every", 100,
                                       "--log-every", 10))
    try:
        wait_for(lambda: (folder / "last.pth").exists())
    finally:
        proc.kill()
        proc.wait()
    saved = torch.load(folder / "last.pth", weights_only=True)["step"]
    assert saved >= 50 and max((step for step, _ in read_scalar(folder, "train/loss")), default=0) >= saved - 10


def test_sigterm_to_the_process_group_saves_with_dataloader_workers(tmp_path, eval_folder):
    """What `timeout` and job schedulers send: the signal reaches the workers too."""
    train, folder = noisy_patches(tmp_path / "tiny.h5", count=4000), tmp_path / "run"
    args = training(train, eval_folder, folder, "--epochs", 1)
    args[args.index("--workers") + 1] = 2
    proc = start("train.py", *args, text=True, stderr=subprocess.PIPE, start_new_session=True)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True)
    reader.start()
    wait_for(lambda: any(int(n) >= 20 for n in re.findall(r"(\d+)/500 \[", "".join(seen))))  # workers running
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    reader.join(timeout=10)
    stderr = "".join(seen)
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    state = torch.load(folder / "last.pth", weights_only=True)
    assert 0 < state["batches_done"] < 500
    resumed = run("train.py", *args, "--resume", "--max-steps", state["step"] + 5)
    assert resumed.returncode == 0 and f"step {state['step']}" in resumed.stdout, resumed.stderr


# ---- full disks and read-only folders ----

def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_temporary_file(tmp_path, eval_folder):
    train = noisy_patches(tmp_path / "tiny.h5")
    with tmpfs(tmp_path / "small", "400k") as folder:  # best.pth (230 kB) fits, last.pth (with Adam's state) not
        result = run("train.py", *training(train, eval_folder, folder / "run", "--epochs", 1))
        assert_clean_error(result, "cannot write", "last.pth", "no space left on device")
        assert not list((folder / "run").glob("*tmp*"))


def test_a_tensorboard_write_failure_in_its_thread_is_one_warning_line(capsys):
    """tensorboardX's writer thread may hit the full disk before the checkpoint does; its OSError is a
    warning line (the checkpoint reports the disk), anything else keeps threading's report."""
    from test_readme import load_script
    train = load_script("train.py")
    full = OSError(28, "No space left on device")
    train.log_write_failure(threading.ExceptHookArgs([OSError, full, None, None]))
    assert capsys.readouterr().err == "warning: TensorBoard log not written ([Errno 28] No space left on device)\n"
    try:
        raise KeyError("bug")
    except KeyError as bug:
        train.log_write_failure(threading.ExceptHookArgs([KeyError, bug, bug.__traceback__, None]))
    assert "Traceback" in capsys.readouterr().err


def test_a_full_disk_during_preprocess_is_one_line_and_keeps_a_resumable_file(tmp_path, data):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("t1.bmp", "t2.bmp", "t3.bmp", "t5.bmp", "t8.bmp", "t10.bmp"):
        (images / name).symlink_to(need(data / "T91" / name))
    reference, common = tmp_path / "reference.h5", ["--images", images, "--stride", 4, "--workers", 1]  # ~17 MB
    assert run("preprocess.py", *common, "--output", reference).returncode == 0
    with tmpfs(tmp_path / "small", "8m") as folder:
        output = folder / "t.h5"
        result = run("preprocess.py", *common, "--output", output)
        assert_clean_error(result, "cannot write", "t.h5", "no space left on device", "--resume")
        assert result.returncode == 1 and not output.exists() and Path(f"{output}.partial").exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)
        resumed = run("preprocess.py", *common, "--output", output, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        with h5py.File(output) as got, h5py.File(reference) as expected:
            assert np.array_equal(got["lr"][()], expected["lr"][()]) and np.array_equal(got["hr"][()], expected["hr"][()])


def test_read_only_output_folders_are_one_line_errors(tmp_path, eval_folder):
    train, history = noisy_patches(tmp_path / "tiny.h5"), REPO / "weights" / "training" / "srcnn_x3" / "cpu"
    with read_only(tmp_path / "locked") as folder:
        assert_clean_error(run_module("benchmarks.plot_curves", history, "--output", folder / "c.png"), "cannot write",
                           str(folder))
        assert_clean_error(run_module("weights.archive_run", history, folder / "cpu"), "cannot create", str(folder))
        assert_clean_error(run("train.py", *training(train, eval_folder, folder, "--epochs", 1)), "cannot write", str(folder))
        assert_clean_error(run("preprocess.py", "--images", eval_folder, "--output", folder / "p.h5", "--patch-size", 21),
                           "cannot write", str(folder))


# ---- preprocess: one process per output file ----

def test_a_second_preprocess_cannot_touch_a_running_ones_file(tmp_path, data):
    output = tmp_path / "t91.h5"
    common = ["--images", need(data / "T91"), "--output", output, "--workers", 1]
    first = start("preprocess.py", *common)
    partial = Path(f"{output}.partial")
    wait_for(partial.exists, poll=0.01)
    first.send_signal(signal.SIGSTOP)  # held mid-run, lock and all, however fast this machine is
    try:
        second = run("preprocess.py", *common)
        assert_clean_error(second, str(output), "in use by another process", f"pid {first.pid}")
        assert partial.exists()
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0 and output.exists()


def test_an_interrupted_preprocess_is_never_discarded_unasked(tmp_path, data):
    output = tmp_path / "t91.h5"
    common = ["--images", need(data / "T91"), "--output", output, "--workers", 1]
    proc = start("preprocess.py", *common)
    partial = Path(f"{output}.partial")
    wait_for(lambda: partial.exists() and partial.stat().st_size > 1 << 20, poll=0.01)
    proc.kill()
    proc.wait()
    size = partial.stat().st_size
    assert_clean_error(run("preprocess.py", *common), "holds an interrupted run", "--resume", "--overwrite")
    assert partial.stat().st_size == size
    fresh = run("preprocess.py", *common, "--overwrite", "--max-images", 3)
    assert fresh.returncode == 0 and not partial.exists() and "from 3 images" in fresh.stdout, fresh.stderr


# ---- inputs that would train to nonsense: refused before the first step ----

def test_an_interrupted_eval_file_is_started_afresh_not_resumed(tmp_path, eval_folder):
    output = tmp_path / "e.h5"
    Path(f"{output}.partial").write_bytes(b"what a killed --eval run left")
    common = ["--images", eval_folder, "--eval", "--output", output]
    assert_clean_error(run("preprocess.py", *common), "interrupted run", "--overwrite")
    assert "--overwrite starts" in run("preprocess.py", *common, "--resume").stderr
    assert run("preprocess.py", *common, "--overwrite").returncode == 0 and output.exists()
    assert not Path(f"{output}.partial").exists()


def test_patch_files_that_would_train_to_nonsense_are_refused(tmp_path, eval_folder):
    good = noisy_patches(tmp_path / "good.h5")
    with h5py.File(good) as f:
        lr, hr = f["lr"][()], f["hr"][()]
    cases = {
        "float.h5": (lambda p: write_patches(p, lr.astype(np.float32), hr.astype(np.float32)), "not uint8"),
        "signed.h5": (lambda p: write_patches(p, lr.astype(np.int8), hr.astype(np.int8)), "not uint8"),
        "broadcast.h5": (lambda p: write_patches(p, lr, hr[:, :, :1]), "do not match"),  # 21x1 hr broadcasts
        "bare.h5": (bare_patches, "attribute"),
    }
    for name, (make, fragment) in cases.items():
        make(tmp_path / name, lr, hr) if make is bare_patches else make(tmp_path / name)
        result = run("train.py", *training(tmp_path / name, eval_folder, tmp_path / f"run_{name}", "--epochs", 1))
        assert_clean_error(result, name, fragment)
    for chunk in (0, 40):  # one the resume digest samples first, one only the checksum pass reads
        flipped = noisy_patches(tmp_path / f"flipped{chunk}.h5")
        with h5py.File(flipped) as f:
            offset = f["hr"].id.get_chunk_info(chunk).byte_offset
        with open(flipped, "r+b") as raw:
            raw.seek(offset + 100)
            byte = raw.read(1)
            raw.seek(offset + 100)
            raw.write(bytes([byte[0] ^ 0x10]))
        for extra in ((), ("--in-memory",)):
            result = run("train.py", *training(flipped, eval_folder, tmp_path / "f", "--epochs", 1, *extra))
            assert_clean_error(result, flipped.name, "corrupt")


def bare_patches(path: Path, lr: np.ndarray, hr: np.ndarray) -> None:
    """Patches without the attributes preprocess.py writes (scale, colour, patch sizes)."""
    with h5py.File(path, "w") as f:
        f["lr"], f["hr"] = lr, hr


def test_bad_validation_or_too_few_patches_stop_before_the_first_epoch(tmp_path, eval_folder):
    train = noisy_patches(tmp_path / "tiny.h5", count=4000)  # an epoch that would take a while
    started = time.time()
    assert_clean_error(run("train.py", *training(train, train, tmp_path / "a", "--epochs", 1)),
                       "tiny.h5", "training patches, not whole images")
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(textured_image(15, 15)).save(small / "s.png")
    assert_clean_error(run("train.py", *training(train, small, tmp_path / "b", "--epochs", 1)), "s", "too small to measure")
    few = noisy_patches(tmp_path / "few.h5", count=5)
    assert_clean_error(run("train.py", *training(few, eval_folder, tmp_path / "c", "--epochs", 1)),
                       "5 patches", "--batch-size 8")
    assert time.time() - started < 90 and not list(tmp_path.glob("[abc]/*.pth"))


def test_validation_images_must_keep_one_ssim_window_after_shaving(tmp_path):
    from datasets import MIN_MEASURED_SIDE, eval_pairs
    side = MIN_MEASURED_SIDE + 2 * 3  # x3 shaves 3 pixels a side: 17, which modcrop to x3 never gives
    for size, fine in ((side + 1, True), (side - 2, False)):  # the nearest sizes on either side: 18, 15
        folder = tmp_path / f"s{size}"
        folder.mkdir()
        Image.fromarray(textured_image(size, 60)).save(folder / "a.png")
        if fine:
            assert eval_pairs(folder, 3)[0][1].shape[:2] == (size, 60)
        else:
            with pytest.raises(ValueError, match="too small to measure"):
                eval_pairs(folder, 3)
    with h5py.File(tmp_path / "e.h5", "w") as f:  # an --eval file whose HR is not 3x its LR
        f.attrs.update(scale=3, blur_sigma=0.0)
        f["hr/0"], f["lr/0"] = np.zeros((60, 60), np.uint8), np.zeros((21, 20), np.uint8)
    with pytest.raises(ValueError, match="is not 3x its LR"):
        eval_pairs(tmp_path / "e.h5", 3)
