"""The degradations a real LR photo may have been through, and preprocess.py --degradation mix."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from skimage import data as skimage_data

import degradations
import preprocess
from conftest import run
from degradations import Degradation
from utils import degrade, modcrop, save_image


@pytest.fixture
def photo() -> np.ndarray:
    return modcrop(skimage_data.astronaut()[100:220, 150:282], 12)  # 120 x 132 RGB


def test_names_round_trip_and_nonsense_is_refused():
    for degradation in degradations.TABLE + (Degradation("pil", 0.35, 61),):
        assert Degradation.parse(str(degradation)) == degradation
    assert str(Degradation("cv2-area", 1.0, 75)) == "cv2-area+blur1+jpeg75"
    for text in ("bilinear", "matlab+jpeg101", "matlab+blur", "jpeg75"):
        with pytest.raises(ValueError):
            Degradation.parse(text)


def test_matlab_kernel_is_the_protocol_degradation(photo):
    for blur in (0.0, 0.73):
        assert np.array_equal(degradations.apply(photo, 3, Degradation("matlab", blur)), degrade(photo, 3, blur)[0])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_each_kernel_is_its_librarys_own(photo, scale):
    cv2 = pytest.importorskip("cv2")
    h, w = photo.shape[0] // scale, photo.shape[1] // scale
    expected = {"pil": np.asarray(__import__("PIL.Image").Image.fromarray(photo).resize((w, h), 3)),  # 3: BICUBIC
                "cv2-cubic": cv2.resize(photo, (w, h), interpolation=cv2.INTER_CUBIC),
                "cv2-area": photo.reshape(h, scale, w, scale, 3).mean(axis=(1, 3))}
    for kernel, lr in expected.items():
        got = degradations.apply(photo, scale, Degradation(kernel))
        assert got.shape == (h, w, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - np.round(lr).astype(int)).max() <= 1, kernel
    # at an odd scale OpenCV's cubic and linear sample the centre pixel of each block: no antialiasing at all
    if scale == 3:
        for kernel in ("cv2-cubic", "cv2-linear"):
            assert np.array_equal(degradations.apply(photo, 3, Degradation(kernel)), photo[1::3, 1::3])
    assert not np.array_equal(degradations.apply(photo, scale, Degradation("pil")),
                              degradations.apply(photo, scale, Degradation("matlab")))


def test_blur_and_jpeg_move_the_lr_the_right_way(photo):
    clean = degradations.apply(photo, 2, Degradation("pil")).astype(float)
    error = lambda d: np.abs(degradations.apply(photo, 2, d).astype(float) - clean).mean()
    assert 0 < error(Degradation("pil", jpeg_quality=95)) < error(Degradation("pil", jpeg_quality=60))
    assert 0 < error(Degradation("pil", blur_sigma=0.4)) < error(Degradation("pil", blur_sigma=1.2))
    gray = degradations.apply(photo[..., 0], 2, Degradation("cv2-area", 0.5, 70))
    assert gray.shape == (60, 66) and gray.dtype == np.uint8


def test_sample_draws_what_mix_says():
    rng = np.random.default_rng(0)
    draws = [degradations.sample(rng) for _ in range(2000)]
    assert {d.kernel for d in draws} == set(degradations.KERNELS)
    blurred, compressed = [d for d in draws if d.blur_sigma], [d for d in draws if d.jpeg_quality]
    assert 0.45 < len(blurred) / 2000 < 0.55 and 0.45 < len(compressed) / 2000 < 0.55
    assert all(0 < d.blur_sigma <= 1.2 for d in blurred) and max(d.blur_sigma for d in blurred) > 1.1
    assert {d.jpeg_quality for d in compressed} == set(range(60, 96))
    assert [str(degradations.sample(np.random.default_rng(7))) for _ in range(2)] == \
        [str(degradations.sample(np.random.default_rng(7)))] * 2
    weighted = {**degradations.MIX, "kernels": ["cv2-cubic", "cv2-cubic", "matlab"]}
    kernels = [degradations.sample(rng, weighted).kernel for _ in range(3000)]
    assert set(kernels) == {"cv2-cubic", "matlab"} and 0.63 < kernels.count("cv2-cubic") / 3000 < 0.70


def test_mixed_patches_away_from_the_border_are_the_whole_images(photo, monkeypatch):
    """With every draw the protocol's, each FSRCNN patch cut from its own padded region equals the patch of the
    whole degraded image wherever the region lies inside it (8 LR pixels from every edge)."""
    monkeypatch.setattr(degradations, "sample", lambda rng, mix: Degradation("matlab"))
    lr_patches, hr_patches, names = preprocess.mixed_patches(photo, 3, 24, 12, True, np.random.default_rng(0))
    lr_whole = degrade(photo, 3)[0]
    corners = [(y, x) for y in range(0, 120 - 24 + 1, 12) for x in range(0, 132 - 24 + 1, 12)]
    assert len(lr_patches) == len(corners) and set(names) == {"matlab"}
    inside = 0
    for (y, x), lr, hr in zip(corners, lr_patches, hr_patches):
        assert np.array_equal(hr, photo[y:y + 24, x:x + 24]) and lr.shape == (8, 8, 3)
        if 24 <= y <= 120 - 48 and 24 <= x <= 132 - 48:
            inside += 1
            assert np.array_equal(lr, lr_whole[y // 3:y // 3 + 8, x // 3:x // 3 + 8]), (y, x)
    assert inside >= 4


def test_preprocess_mix_is_seeded_recorded_and_reads_several_folders(tmp_path):
    for folder, name, crop in (("a", "one.png", (0, 0)), ("b", "two.png", (200, 150))):
        (tmp_path / folder).mkdir()
        save_image(tmp_path / folder / name, skimage_data.astronaut()[crop[0]:crop[0] + 90, crop[1]:crop[1] + 96])
    outputs = []
    for workers, seed, out in ((1, 5, "a.h5"), (2, 5, "b.h5"), (1, 6, "c.h5")):
        result = run("preprocess.py", "--images", tmp_path / "a", tmp_path / "b", "--scale", 3, "--degradation", "mix",
                     "--seed", seed, "--workers", workers, "--output", tmp_path / out)
        assert result.returncode == 0, result.stderr
        outputs.append(h5py.File(tmp_path / out, "r"))
    first, same, other = outputs
    assert first.attrs["degradation"] == "mix" and first.attrs["seed"] == 5 and "jpeg_quality" in first.attrs["degradation_mix"]
    assert [s.decode() for s in first["sources"][:]] == ["a/one.png", "b/two.png"]
    assert len(first["degradations"]) == len(first["lr"]) == len(first["hr"]) == first["source_patches"][:].sum()
    assert np.array_equal(first["lr"][:], same["lr"][:]) and list(first["degradations"]) == list(same["degradations"])
    assert np.array_equal(first["hr"][:], other["hr"][:]) and not np.array_equal(first["lr"][:], other["lr"][:])
    names = [d.decode() for d in first["degradations"][:]]
    assert len({Degradation.parse(n).kernel for n in names}) == 5 and any("+jpeg" in n for n in names)
    result = run("preprocess.py", "--images", tmp_path / "a", "--scale", 3, "--degradation", "mix", "--blur-sigma", 0.5)
    assert result.returncode == 2 and "mix" in result.stderr.splitlines()[-1]
    result = run("preprocess.py", "--images", tmp_path / "a", "--scale", 3, "--mix-kernels", "cv2-cubic")
    assert result.returncode == 2 and "--degradation mix" in result.stderr.splitlines()[-1]


def test_mix_kernels_weights_the_draws_and_names_the_file(tmp_path):
    """Naming a kernel twice draws it twice as often; the file's default name and attributes say so, and the
    default (each kernel once) keeps the plain _mix name."""
    (tmp_path / "photos").mkdir()
    save_image(tmp_path / "photos" / "one.png", skimage_data.astronaut()[:120, :132])
    weighted = ["cv2-cubic", "cv2-cubic", "cv2-area"]
    for given, name in ((["cv2-area", "cv2-cubic", "cv2-cubic"], "photos_x2_mix-00201.h5"),  # any order: KERNELS'
                        (list(reversed(degradations.KERNELS)), "photos_x2_mix.h5")):
        result = run("preprocess.py", "--images", tmp_path / "photos", "--scale", 2, "--degradation", "mix",
                     "--mix-kernels", *given, "--workers", 1, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        with h5py.File(tmp_path / "output" / name, "r") as f:
            kernels = json.loads(f.attrs["degradation_mix"])["kernels"]
            assert kernels == (weighted if "-" in name else list(degradations.KERNELS))
            drawn = {Degradation.parse(n.decode()).kernel for n in f["degradations"][:]}
            assert drawn == set(kernels), drawn
    result = run("preprocess.py", "--images", tmp_path / "photos", "--scale", 2, "--degradation", "mix", "--eval",
                 "--mix-kernels", *weighted, cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "output" / "photos_x2_mix-00201_eval.h5").is_file(), result.stderr
    result = run("preprocess.py", "--images", tmp_path / "photos", "--scale", 2, "--degradation", "mix",
                 "--mix-kernels", *["pil"] * 10, cwd=tmp_path)
    assert result.returncode == 2 and "at most 9 times" in result.stderr.splitlines()[-1]


def test_mix_probabilities_set_how_often_a_blur_and_jpeg_are_drawn(tmp_path):
    (tmp_path / "photos").mkdir()
    save_image(tmp_path / "photos" / "one.png", skimage_data.astronaut()[:120, :132])
    result = run("preprocess.py", "--images", tmp_path / "photos", "--scale", 2, "--degradation", "mix",
                 "--mix-blur-probability", 0, "--mix-jpeg-probability", 1, "--workers", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "output" / "photos_x2_mix-blur0-jpeg1.h5", "r") as f:
        mix = json.loads(f.attrs["degradation_mix"])
        drawn = [Degradation.parse(n.decode()) for n in f["degradations"][:]]
    assert (mix["blur_probability"], mix["jpeg_probability"]) == (0, 1) and len(drawn) > 10
    assert all(d.blur_sigma == 0 and 60 <= d.jpeg_quality <= 95 for d in drawn)
    for args, message in ((["--degradation", "mix", "--mix-jpeg-probability", 1.5], "between 0 and 1"),
                          (["--mix-blur-probability", 0.2], "--degradation mix")):
        result = run("preprocess.py", "--images", tmp_path / "photos", "--scale", 2, *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr.splitlines()[-1], result.stderr


def test_an_eval_file_gives_each_image_its_own_recorded_degradation(tmp_path):
    for i in range(3):
        save_image(tmp_path / f"im{i}.png", skimage_data.astronaut()[60 * i:60 * i + 72, 100:190])
    result = run("preprocess.py", "--images", tmp_path, "--scale", 3, "--degradation", "mix", "--eval", "--seed", 4,
                 "--output", tmp_path / "val.h5")
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "val.h5", "r") as f:
        assert f.attrs["degradation"] == "mix" and f.attrs["mode"] == "eval"
        for key in f["lr"]:
            hr, lr = f["hr"][key][()], f["lr"][key]
            degradation = Degradation.parse(lr.attrs["degradation"])
            assert np.array_equal(lr[()], degradations.apply(hr, 3, degradation)), lr.attrs["degradation"]
