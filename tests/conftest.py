"""Shared helpers. Real data (T91, Set5, Set14) lives in ../shared/data beside the repo; tests that
need it skip with a reason where it is absent (a user's machine)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"  # the project's machines and CI; a user's clone has data/ (README, 'Data')
DATA = Path(os.environ.get("SRCNN_DATA") or (SHARED_DATA if SHARED_DATA.exists() else REPO / "data"))
# the OpenCV graphs live beside the repo on the project's machines, as the data does (never in the repo)
PEERS = Path(os.environ.get("SRCNN_PEERS") or REPO.parent / "shared" / "peers")
sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Downloads and exported ONNX graphs go to a folder of this test run, not the user's ~/.cache/srcnn;
    set in the environment, so the scripts the tests run use it too."""
    os.environ["SRCNN_CACHE"] = str(tmp_path_factory.mktemp("srcnn_cache"))


class FixedOutput:
    """A stand-in for a network (evaluate.Network) whose output is given: N x C x H x W float32 in 0..1,
    returned for any input, so evaluate.upscale's work after the network can be tested on its own."""

    def __init__(self, output: np.ndarray, takes_lr: bool = True) -> None:
        self.output, self.takes_lr = output, takes_lr

    def run_array(self, x: np.ndarray, tile: int = 0) -> np.ndarray:
        return self.output


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: benchmark data is not on this machine (see README, 'Data')")
    return path


@pytest.fixture
def data() -> Path:
    return need(DATA)


@pytest.fixture
def peers() -> Path:
    """The OpenCV dnn_superres graphs (../shared/peers/README.md), with OpenCV's contrib build to run them."""
    pytest.importorskip("cv2.dnn_superres", reason="OpenCV's contrib build (dnn_superres) is not installed")
    if not (PEERS / "ESPCN_x3.pb").exists():
        pytest.skip(f"{PEERS} not found: the OpenCV peer graphs are not on this machine")
    return PEERS


def run(script: str, *args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one of the repo's scripts as a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_module(module: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a benchmarks/ or weights/ script as its docstring says, `python -m package.name`, from the repo root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A failed run that ends in one readable error line naming the problem, with no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "error" in last.lower(), result.stderr
    for fragment in fragments:
        assert fragment in last, f"{fragment!r} not in {last!r}"


def write_patches(path: Path, lr: np.ndarray, hr: np.ndarray, scale: int = 3, color: str = "y", blur_sigma: float = 0.0,
                  lr_size: bool = False) -> Path:
    """A patch file as preprocess.py writes one: uint8 lr/hr with Fletcher-32 checksums and its attributes."""
    import h5py
    with h5py.File(path, "w") as f:
        for name, patches in (("lr", lr), ("hr", hr)):
            f.create_dataset(name, data=patches, chunks=(1, *patches.shape[1:]), fletcher32=True)
        f.attrs.update(scale=scale, blur_sigma=blur_sigma, mode="patches", color=color, patch_size=hr.shape[-1],
                       lr_patch_size=lr.shape[-1], stride=hr.shape[-1], lr_size=lr_size, downscales="")
    return path


def noisy_patches(path: Path, count: int = 96, size: int = 21, seed: int = 0, **attrs: object) -> Path:
    """Random HR patches and a noisy copy of each as LR, in a file as preprocess.py writes one (`attrs`:
    write_patches' settings)."""
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
    lr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    return write_patches(path, lr, hr, **attrs)


def start(script: str, *args: object, **popen: object) -> subprocess.Popen:
    """One of the repo's scripts started in the background (output discarded unless `popen` says otherwise)."""
    popen = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **popen}
    return subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, **popen)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """An untrained SRCNN 9-5-5 weights file (seeded) recording scale 3."""
    import torch
    from models import build_model
    torch.manual_seed(0)
    path = tmp_path / "w.pth"
    torch.save({"model": build_model("9-5-5").state_dict(), "meta": {"scale": 3}}, path)
    return path


def textured_image(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth random image (noise blurred by upsampling), uint8; realistic enough for SR tests."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (height // 8 + 2, width // 8 + 2, channels))
    from PIL import Image
    planes = [np.asarray(Image.fromarray(coarse[..., c].astype(np.float32)).resize((width, height), Image.BICUBIC))
              for c in range(channels)]
    image = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    return image[..., 0] if channels == 1 else image
