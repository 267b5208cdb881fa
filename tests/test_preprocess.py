import shutil
import signal
import subprocess
import time
import sys

import h5py
import numpy as np
import pytest
from conftest import REPO, assert_clean_error, need, run, textured_image
from PIL import Image

from preprocess import cut_patches
from utils import degrade, imresize, load_image, modcrop, y_channel


@pytest.fixture
def t91_subset(data, tmp_path):
    """Five T91 images, linked into a folder of their own."""
    folder = tmp_path / "t91"
    folder.mkdir()
    for name in ("t1.bmp", "t2.bmp", "t3.bmp", "tt1.bmp", "tt2.bmp"):
        (folder / name).symlink_to(need(data / "T91" / name))
    return folder


def test_patches_match_an_independent_computation(t91_subset, tmp_path):
    out = tmp_path / "train.h5"
    result = run("preprocess.py", "--images", t91_subset, "--scale", 3, "--output", out, "--workers", 2)
    assert result.returncode == 0, result.stderr
    paths = sorted(t91_subset.iterdir())
    expected = 0
    for path in paths:
        h, w = modcrop(load_image(path), 3).shape[:2]
        expected += len(range(0, h - 33 + 1, 14)) * len(range(0, w - 33 + 1, 14))
    with h5py.File(out) as f:
        assert f["lr"].shape == f["hr"].shape == (expected, 33, 33)
        assert f["lr"].dtype == np.uint8
        assert f.attrs["scale"] == 3 and f.attrs["patch_size"] == 33 and f.attrs["stride"] == 14
        assert f.attrs["blur_sigma"] == 0
        assert [s.decode() for s in f["sources"]] == [p.name for p in paths]
        assert f["source_patches"][:].sum() == expected
        # the first patch of the first image, recomputed by hand
        hr = modcrop(load_image(paths[0]), 3)
        bicubic = degrade(hr, 3)[1]
        np.testing.assert_array_equal(f["hr"][0], y_channel(hr)[:33, :33])
        np.testing.assert_array_equal(f["lr"][0], y_channel(bicubic)[:33, :33])
    assert "wrote" in result.stdout and not list(tmp_path.glob("*.partial"))


def test_presets_and_blur(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(textured_image(260, 300)).save(folder / "a.png")
    out = tmp_path / "holo.h5"
    assert run("preprocess.py", "--images", folder, "--preset", "holopix", "--output", out).returncode == 0
    with h5py.File(out) as f:
        assert f["hr"].shape == (len(range(0, 258 - 119, 78)) * len(range(0, 300 - 119, 78)), 120, 120)
        assert f.attrs["blur_sigma"] == pytest.approx(0.73)
        blurred = f["lr"][0].astype(float)
    plain = tmp_path / "plain.h5"
    run("preprocess.py", "--images", folder, "--preset", "holopix", "--blur-sigma", 0, "--output", plain)
    with h5py.File(plain) as f:
        assert np.abs(np.diff(blurred)).mean() < np.abs(np.diff(f["lr"][0].astype(float))).mean()  # blur removes detail


def test_eval_mode_stores_whole_images(data, tmp_path):
    out = tmp_path / "set5.h5"
    assert run("preprocess.py", "--images", need(data / "Set5" / "x3"), "--scale", 3, "--eval", "--output", out).returncode == 0
    with h5py.File(out) as f:
        assert len(f["hr"]) == len(f["lr"]) == 5
        assert f["hr"]["0"].shape == (510, 510, 3) and f["lr"]["0"].shape == (170, 170, 3)
        assert f["hr"]["0"].attrs["name"] == "img_001_SRF_3"


def test_holopix_layout(tmp_path):
    for view in ("left", "right"):
        (tmp_path / "holo" / "train" / view).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(textured_image(64, 80, seed=i)).save(tmp_path / "holo" / "train" / view / f"{i}.jpg")
    out = tmp_path / "h.h5"
    result = run("preprocess.py", "--holopix50k", tmp_path / "holo", "--split", "train", "--views", "left",
                 "--output", out)
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert [s.decode() for s in f["sources"]] == ["train/left/0.jpg", "train/left/1.jpg"]
    assert_clean_error(run("preprocess.py", "--holopix50k", tmp_path / "holo", "--split", "val"), "val")


def test_bad_images_are_skipped_and_counted(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(textured_image(80, 80)).save(folder / "good.png")
    Image.fromarray(textured_image(20, 20)).save(folder / "tiny.png")
    (folder / "notes.jpg").write_text("not an image")
    Image.fromarray(textured_image(80, 80)).save(folder / "cut.png")
    (folder / "cut.png").write_bytes((folder / "cut.png").read_bytes()[:200])  # truncated PNG
    result = run("preprocess.py", "--images", folder, "--output", tmp_path / "m.h5", "--workers", 1)
    assert result.returncode == 0, result.stderr
    for name, problem in (("tiny.png", "smaller than the 33x33 patch size"), ("notes.jpg", "not a readable image"),
                          ("cut.png", "not a readable image")):
        assert any(name in line and problem in line for line in result.stderr.splitlines()), (name, result.stderr)
    assert "from 1 images (3 skipped)" in result.stdout


def test_lr_size_patches_pair_each_lr_patch_with_the_hr_patch_it_covers(t91_subset, tmp_path):
    out = tmp_path / "fsrcnn.h5"
    assert run("preprocess.py", "--images", t91_subset, "--scale", 3, "--lr-size", "--output", out).returncode == 0
    first = sorted(t91_subset.iterdir())[0]
    hr = modcrop(load_image(first), 3)
    lr = degrade(hr, 3)[0]
    with h5py.File(out) as f:
        assert f["lr"].shape[1:] == (11, 11) and f["hr"].shape[1:] == (33, 33) and len(f["lr"]) == len(f["hr"])
        assert f.attrs["lr_size"] and f.attrs["lr_patch_size"] == 11
        per_row = len(range(0, hr.shape[1] // 3 - 11 + 1, 4))  # LR stride 14 // 3 = 4, HR stride 12
        np.testing.assert_array_equal(f["lr"][1], y_channel(lr)[0:11, 4:15])
        np.testing.assert_array_equal(f["hr"][1], y_channel(hr)[0:33, 12:45])
        np.testing.assert_array_equal(f["hr"][per_row], y_channel(hr)[12:45, 0:33])


def test_downscale_adds_the_patches_of_each_shrunk_image(t91_subset, tmp_path):
    out = tmp_path / "aug.h5"
    result = run("preprocess.py", "--images", t91_subset, "--scale", 3, "--downscale", 0.7, 0.2, "--output", out)
    assert result.returncode == 0, result.stderr
    counts, firsts = [], []
    for path in sorted(t91_subset.iterdir()):
        image = load_image(path)
        for factor in (1, 0.7, 0.2):
            hr = modcrop(image if factor == 1 else imresize(image, factor), 3)
            rows, columns = len(range(0, hr.shape[0] - 33 + 1, 14)), len(range(0, hr.shape[1] - 33 + 1, 14))
            counts.append(rows * columns if min(hr.shape[:2]) >= 33 else 0)
            if path == sorted(t91_subset.iterdir())[0]:
                firsts.append((y_channel(degrade(hr, 3)[1])[:33, :33], y_channel(hr)[:33, :33]))
    assert 0 in counts  # t3 is 155 pixels high: 0.2 of it is 31, no patch, not an error
    with h5py.File(out) as f:
        assert len(f["hr"]) == sum(counts) and f["source_patches"][0] == sum(counts[:3])
        assert f.attrs["downscales"] == "0.7 0.2"
        # the first patch of each version of the first image, in order: original, 0.7, 0.2
        for (bicubic, hr), start in zip(firsts, (0, counts[0], counts[0] + counts[1])):
            np.testing.assert_array_equal(f["lr"][start], bicubic)
            np.testing.assert_array_equal(f["hr"][start], hr)
    assert_clean_error(run("preprocess.py", "--images", t91_subset, "--downscale", 1.5, "--output", out),
                       "--downscale factors must lie between 0 and 1")


@pytest.mark.parametrize("case", ["empty", "all-bad", "scale-1", "scale-7", "missing"])
def test_unusable_input_is_a_one_line_error(tmp_path, case):
    folder = tmp_path / "in"
    folder.mkdir()
    out = tmp_path / "o.h5"
    args = {"empty": [], "all-bad": [], "scale-1": ["--scale", 1], "scale-7": ["--scale", 7], "missing": []}[case]
    if case == "all-bad":
        Image.fromarray(textured_image(16, 16)).save(folder / "small.png")
    if case.startswith("scale"):
        Image.fromarray(textured_image(64, 64)).save(folder / "a.png")
    source = tmp_path / "nowhere" if case == "missing" else folder
    result = run("preprocess.py", "--images", source, "--output", out, *args)
    expected = {"empty": "no images found", "all-bad": "all 1 images were skipped", "scale-1": "invalid choice: 1",
                "scale-7": "invalid choice: 7", "missing": "not a folder"}[case]
    assert_clean_error(result, expected)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_interrupted_run_leaves_no_complete_looking_file(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(textured_image(200, 200, seed=i)).save(folder / f"{i:02d}.png")
    out = tmp_path / "big.h5"
    proc = subprocess.Popen([sys.executable, str(REPO / "preprocess.py"), "--images", str(folder), "--output", str(out),
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    partial = out.with_name("big.h5.partial")
    written, deadline = 0, time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # wait until some images are in the file
        try:
            with h5py.File(partial, "r", locking=False) as f:
                written = len(f["sources"])
        except (OSError, KeyError):
            pass
        if written >= 1:
            break
        time.sleep(0.05)
    running = proc.poll() is None
    proc.kill()
    proc.wait()
    assert running and 1 <= written < 40, (written, proc.stderr.read().decode()[-2000:])  # killed mid-run, not before
    assert partial.exists()  # the images done so far stay, under the .partial name
    assert not out.exists()  # nothing a reader would take for a finished file


def test_ctrl_c_is_a_stop_that_keeps_the_images_done(tmp_path):
    """Exit 130 (as train.py's), so weights.reproduce says how to go on rather than calling it a failure."""
    folder = tmp_path / "many"
    folder.mkdir()
    Image.fromarray(textured_image(1200, 1200)).save(folder / "00.png")
    for i in range(1, 40):  # about 10 s of work: at 400x400 the run could end before the signal came
        shutil.copyfile(folder / "00.png", folder / f"{i:02d}.png")
    out = tmp_path / "big.h5"
    proc = subprocess.Popen([sys.executable, str(REPO / "preprocess.py"), "--images", str(folder), "--output", str(out),
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as a shell's `&` starts it
    partial = out.with_name("big.h5.partial")
    written, deadline = 0, time.time() + 60
    while time.time() < deadline and proc.poll() is None and written < 1:  # stopped mid-run, not before
        try:
            with h5py.File(partial, "r", locking=False) as f:
                written = len(f["sources"])
        except (OSError, KeyError):
            time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1].decode()
    assert written >= 1 and proc.returncode == 128 + signal.SIGINT, (written, stderr[-2000:])
    assert "interrupted:" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert partial.exists() and not out.exists()


def test_max_images_holds_for_an_eval_file(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(textured_image(60, 60, seed=i)).save(folder / f"{i}.png")
    out = tmp_path / "e.h5"
    result = run("preprocess.py", "--images", folder, "--eval", "--max-images", 2, "--output", out)
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert sorted(f["hr"][k].attrs["name"] for k in f["hr"]) == ["0", "1"]


def test_cut_patches_grid():
    image = np.arange(50 * 40).reshape(50, 40)
    patches = cut_patches(image, 33, 7)
    assert len(patches) == len(range(0, 18, 7)) * len(range(0, 8, 7))
    np.testing.assert_array_equal(patches[1], image[0:33, 7:40])


def peak_rss_mb(*args) -> float:
    """Peak resident memory of one preprocess.py run, measured in a fresh wrapper process."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, str(REPO / "preprocess.py"), *map(str, args)],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return int(out.stdout) / 1024


def test_memory_stays_flat_as_the_image_count_grows(tmp_path):
    folder = tmp_path / "gen"
    folder.mkdir()
    for i in range(200):
        Image.fromarray(textured_image(240, 320, seed=i)).save(folder / f"{i:03d}.png")
    peaks = {}
    for count in (20, 200):
        out = tmp_path / f"{count}.h5"
        peaks[count] = peak_rss_mb("--images", folder, "--max-images", count, "--output", out, "--workers", 1)
        with h5py.File(out) as f:
            assert len(f["source_patches"]) == count
    # each image gives 315 patch pairs (0.7 MB): holding 200 images' patches would add ~120 MB to the peak
    assert abs(peaks[200] - peaks[20]) < 50, peaks


def test_default_output_names_the_set_and_the_patch_settings(tmp_path, monkeypatch):
    import preprocess
    for folder in ("T91", "Set5/x3", "SunHays80/train", "SunHays80/val"):
        (tmp_path / folder).mkdir(parents=True)

    def default_name(*argv) -> str:
        monkeypatch.setattr(sys, "argv", ["preprocess.py", *map(str, argv)])
        return preprocess.default_output(preprocess.parse_args(preprocess.build_parser())).name
    assert default_name("--images", tmp_path / "T91", tmp_path / "SunHays80/train", "--lr-size") == \
        "T91+SunHays80_train_x3_lr.h5"
    assert default_name("--images", tmp_path / "SunHays80/val", "--eval") == "SunHays80_val_x3_eval.h5"
    assert default_name("--images", tmp_path / "Set5/x3", "--eval") == "Set5_x3_eval.h5"
    # the two presets of one folder, and a blurred validation file, each get a name of their own
    assert default_name("--images", tmp_path / "T91", "--preset", "paper") == "T91_x3.h5"
    assert default_name("--images", tmp_path / "T91", "--preset", "holopix") == "T91_x3_p120_s78_blur0.73.h5"
    assert default_name("--images", tmp_path / "T91", "--stride", "20") == "T91_x3_s20.h5"
    assert default_name("--images", tmp_path / "SunHays80/val", "--eval", "--preset", "holopix") == \
        "SunHays80_val_x3_blur0.73_eval.h5"


def test_a_full_disk_is_a_clear_error_and_keeps_the_partial_file_for_resume(tmp_path, monkeypatch):
    import errno
    import preprocess
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(textured_image(64, 64, seed=i)).save(folder / f"{i}.png")
    calls = []

    def no_space(self, key, value):
        calls.append(key)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(h5py.Dataset, "__setitem__", no_space)
    out = tmp_path / "out.h5"
    monkeypatch.setattr(sys, "argv", ["preprocess.py", "--images", str(folder), "--output", str(out), "--workers", "1"])
    with pytest.raises(SystemExit, match="cannot write .*out.h5: no space left on device; .*continue with --resume"):
        preprocess.main()
    assert calls and not out.exists() and (tmp_path / "out.h5.partial").exists()  # kept for --resume


def test_resume_after_sigkill_gives_exactly_the_clean_file(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        Image.fromarray(textured_image(150, 180, seed=i)).save(folder / f"{i:02d}.png")
    (folder / "15_broken.png").write_text("not an image")  # skipped images must not confuse the resume point
    clean, out = tmp_path / "clean.h5", tmp_path / "resumed.h5"
    assert run("preprocess.py", "--images", folder, "--output", clean, "--workers", 2).returncode == 0
    proc = subprocess.Popen([sys.executable, str(REPO / "preprocess.py"), "--images", str(folder), "--output", str(out),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    partial = out.with_name("resumed.h5.partial")
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once some images are in the file
        try:
            with h5py.File(partial, "r", locking=False) as f:
                if len(f["sources"]) >= 8:
                    break
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert partial.exists() and not out.exists()
    resumed = run("preprocess.py", "--images", folder, "--output", out, "--workers", 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    done = int(resumed.stderr.split("resuming ")[1].split(": ")[1].split(" of ")[0])
    assert 8 <= done < 31  # it continued where the killed run stopped
    with h5py.File(clean) as a, h5py.File(out) as b:
        assert list(a["sources"]) == list(b["sources"])
        np.testing.assert_array_equal(a["source_patches"], b["source_patches"])
        for name in ("lr", "hr"):
            assert a[name].shape == b[name].shape
            np.testing.assert_array_equal(a[name][:], b[name][:])
