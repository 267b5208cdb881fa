"""Odd and hostile image files: every mode Pillow hands us, EXIF rotation, tiny sizes, decompression
bombs, impostors. Each gives a correct image or a one-line error naming the file."""
import importlib.util
import struct
import zlib
from argparse import Namespace

import numpy as np
import pytest
import torch
from conftest import REPO, assert_clean_error, run, textured_image
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from inference import Upscaler
from models import build_model
from utils import ImageError, load_image

spec = importlib.util.spec_from_file_location("srcnn_test_script", REPO / "test.py")  # not Python's own `test`
test_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_script)

RGB = textured_image(24, 32)


def saved(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_every_mode_loads_as_8_bit_gray_or_rgb(tmp_path):
    rgb = Image.fromarray(RGB)
    gray = rgb.convert("L")
    assert load_image(saved(tmp_path, gray, "l.png")).shape == (24, 32)
    np.testing.assert_array_equal(load_image(saved(tmp_path, gray.convert("LA"), "la.png")), np.asarray(gray))
    np.testing.assert_array_equal(load_image(saved(tmp_path, rgb.convert("RGBA"), "rgba.png")), RGB)  # alpha dropped
    palette = rgb.convert("P")
    np.testing.assert_array_equal(load_image(saved(tmp_path, palette, "p.png")), np.asarray(palette.convert("RGB")))
    bits = load_image(saved(tmp_path, gray.convert("1"), "1.png"))
    assert bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 255}
    cmyk = load_image(saved(tmp_path, rgb.convert("CMYK"), "cmyk.tif"))
    assert cmyk.shape == (24, 32, 3) and np.abs(cmyk.astype(int) - RGB).max() <= 1
    deep = np.asarray(gray, dtype=np.uint16) * 257  # 16-bit, full range
    sixteen = load_image(saved(tmp_path, Image.fromarray(deep), "16.png"))
    np.testing.assert_array_equal(sixteen, np.asarray(gray))  # scaled to 8 bits, not clipped at 255


# What each EXIF orientation means, from the standard's wording ("row 0 is the visual ..., column 0 is the
# visual ..."), as the upright image's pixel (i, j) in terms of the stored H x W image `a`.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # row 0 = visual left, column 0 = visual top: upright[i, j] = a[j, i]
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],  # row 0 = visual right, column 0 = top: turn 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # row 0 = visual right, column 0 = bottom
    8: lambda a: a.transpose(1, 0, 2)[::-1],  # row 0 = visual left, column 0 = bottom: turn 90 anticlockwise
}


def exif_saved(tmp_path, pixels, orientation, name, **kwargs):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return saved(tmp_path, Image.fromarray(pixels), name, exif=exif.tobytes(), **kwargs)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_puts_every_pixel_where_it_belongs(tmp_path, orientation):
    """Lossless (PNG's eXIf chunk): the loaded image is exactly the stored one turned upright."""
    rows, columns = np.arange(24)[:, None, None], np.arange(32)[None, :, None]
    stored = np.concatenate([np.broadcast_to(rows * 10, (24, 32, 1)), np.broadcast_to(columns * 7, (24, 32, 1)),
                             (rows * 32 + columns) % 256], axis=2).astype(np.uint8)  # every pixel says where it is
    loaded = load_image(exif_saved(tmp_path, stored, orientation, "o.png"))
    np.testing.assert_array_equal(loaded, UPRIGHT[orientation](stored))


@pytest.mark.parametrize("orientation,corner", [(3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))])
def test_a_jpeg_photos_marked_corner_ends_where_its_orientation_says(tmp_path, orientation, corner):
    """A camera JPEG (lossy): a red 8 x 8 block in the stored top-left corner. Orientation 6 (turn 90
    clockwise) shows it top right, 8 (anticlockwise) bottom left, 3 (180) bottom right."""
    stored = np.full((48, 64, 3), 200, np.uint8)
    stored[:8, :8] = (255, 0, 0)
    loaded = load_image(exif_saved(tmp_path, stored, orientation, "photo.jpg", quality=95))
    assert loaded.shape == ((64, 48, 3) if orientation in (6, 8) else (48, 64, 3))
    rows = slice(0, 8) if corner[0] == 0 else slice(-8, None)
    columns = slice(0, 8) if corner[1] == 0 else slice(-8, None)
    red = loaded[rows, columns][2:-2, 2:-2].astype(int)
    assert red[..., 0].min() > 220 and red[..., 1:].max() < 40, red.mean((0, 1))
    for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        if (r, c) != corner:  # the other three corners are the grey background
            assert np.abs(loaded[r, c].astype(int) - 200).max() < 20, (r, c, loaded[r, c])


def png_header_only(path, width, height):
    """A PNG claiming width x height, with no real pixel data: what a decompression bomb's header says."""
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_decompression_bombs_are_refused_unread(tmp_path):
    bomb = png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(ImageError, match="bomb.png: 20000x20000 is over the limit"):
        load_image(bomb)
    with pytest.raises(ImageError, match="24x32|32x24"):  # 768 pixels against a limit of 500
        load_image(saved(tmp_path, Image.fromarray(RGB), "small.png"), max_pixels=500)
    assert_clean_error(run("test.py", "--image-file", bomb), "bomb.png", "over the limit")


def test_impostors_and_folders(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="photo.jpg: not a readable image"):
        load_image(tmp_path / "photo.jpg")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="dir.png"):
        load_image(tmp_path / "dir.png")


MODES = ["L", "LA", "P", "RGB", "RGBA", "CMYK", "1", "I;16"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("9-1-5").eval()


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), mode=st.sampled_from(MODES),
       scale=st.sampled_from([2, 3, 4]), lr=st.booleans())
def test_any_size_and_mode_gives_an_output_or_a_clear_error(tmp_path_factory, model, height, width, mode, scale, lr):
    folder = tmp_path_factory.mktemp("prop")
    image = Image.fromarray(textured_image(max(height, 8), max(width, 8))[:height, :width])
    image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257) if mode == "I;16" else image.convert(mode)
    path = saved(folder, image, "in.tif" if mode == "CMYK" else "in.png")
    pixels = load_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape[:2] == (height, width)
    assert pixels.ndim == 2 or pixels.shape[2] == 3
    args = Namespace(scale=scale, low_res=lr, blur_sigma=0.0, output_dir=folder / "out", color="y", tile=0, compare=False)
    network = test_script.Network(Upscaler(model, "eager"), {}, "srcnn", 1, None)
    too_small = not lr and min(height, width) // scale * scale < 2 * scale
    if too_small:
        with pytest.raises(ImageError, match="in: .* too small"):
            test_script.restore(network, pixels, "in", args)
        return
    test_script.write_outputs(test_script.restore(network, pixels, "in", args)[0])
    out = load_image(folder / "out" / f"in_srcnn_x{scale}.png")
    expected = (height * scale, width * scale) if lr else (height // scale * scale, width // scale * scale)
    assert out.shape[:2] == expected and out.ndim == pixels.ndim


def test_a_real_lr_photo_takes_the_robust_weights_and_an_hr_image_the_protocol_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(test_script, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    for low_res in (False, True):  # no robust file yet: the protocol weights, and --low-res says why
        path, why = test_script.default_weights(Namespace(scale=3, low_res=low_res))
        assert path.name == "srcnn_x3.pth" and ("srcnn_real_x3.pth is not in" in why) == low_res
    (tmp_path / "weights" / "srcnn_real_x3.pth").touch()
    assert test_script.default_weights(Namespace(scale=3, low_res=True))[0].name == "srcnn_real_x3.pth"
    assert test_script.default_weights(Namespace(scale=3, low_res=False))[0].name == "srcnn_x3.pth"
    assert test_script.default_weights(Namespace(scale=2, low_res=True))[0].name == "srcnn_x2.pth"


def test_fast_png_is_lossless_and_within_a_tenth_of_pillows_default_size(tmp_path):
    """test.py's outputs (OpenCV's encoder at its defaults: level 1, RLE, the Sub filter) decode to the very
    pixels, colour and gray, in at most 10% more bytes on a photo than Pillow's level 6 (benchmarks/
    png_settings.py has the times)."""
    from skimage import data as skimage_data

    from utils import save_image
    for photo in (skimage_data.coffee(), skimage_data.camera()):
        save_image(tmp_path / "fast.png", photo, fast_png=True)
        np.testing.assert_array_equal(load_image(tmp_path / "fast.png"), photo)
        default = saved(tmp_path, Image.fromarray(photo), "default.png")
        assert (tmp_path / "fast.png").stat().st_size < 1.1 * default.stat().st_size
