"""The side-by-side image test.py writes: labelled panels (bicubic, the network, the original with
PSNR where known) over zoomed crops of the most detailed region, where the difference shows."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_PANEL = (900, 1200)  # (height, width): larger images are shown reduced, so the sheet stays a few megapixels
ZOOM = 4  # the crop covers 1/ZOOM of the panel's height and width and is shown at the panel's size
HEADER, GAP = 28, 4
MARK = (255, 0, 0)


def panel_size(height: int, width: int) -> tuple[int, int]:
    """The displayed size of an image: itself, or reduced (aspect kept) to fit within MAX_PANEL."""
    shrink = min(1.0, MAX_PANEL[0] / height, MAX_PANEL[1] / width)
    return max(1, round(height * shrink)), max(1, round(width * shrink))


def detail_box(reference: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """Top-left (y, x) of the height x width window with the most gradient energy in `reference`: the
    textured region where super-resolution differs most visibly from bicubic."""
    gray = reference.astype(np.float64) if reference.ndim == 2 else reference.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    total = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image: any window's sum in 4 reads
    sums = (total[height:, width:] - total[:-height, width:] - total[height:, :-width] + total[:-height, :-width])
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x)


def _rgb(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)


def comparison_sheet(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Panels (label, uint8 image of one size) side by side, each labelled above, with the same
    detailed region (picked on the last panel: the original, or the network's output) marked in red
    and shown ZOOM times enlarged (nearest neighbour, so the pixels are the network's own) below."""
    height, width = panels[0][1].shape[:2]
    shown_h, shown_w = panel_size(height, width)
    crop_h, crop_w = max(1, shown_h // ZOOM), max(1, shown_w // ZOOM)  # image pixels, shown ZOOM x: at most a panel
    y, x = detail_box(panels[-1][1], crop_h, crop_w)
    font = ImageFont.load_default(size=16)
    sheet = Image.new("RGB", (len(panels) * (shown_w + GAP) - GAP, HEADER + 2 * shown_h + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, image) in enumerate(panels):
        left = i * (shown_w + GAP)
        overview = _rgb(image).resize((shown_w, shown_h), Image.Resampling.BOX) if (shown_h, shown_w) != (height, width) \
            else _rgb(image)
        sheet.paste(overview, (left, HEADER))
        zoomed = _rgb(image[y:y + crop_h, x:x + crop_w]).resize((crop_w * ZOOM, crop_h * ZOOM), Image.Resampling.NEAREST)
        sheet.paste(zoomed, (left, HEADER + shown_h + GAP))
        scale_y, scale_x = shown_h / height, shown_w / width
        draw.rectangle([left + x * scale_x, HEADER + y * scale_y, left + (x + crop_w) * scale_x - 1,
                        HEADER + (y + crop_h) * scale_y - 1], outline=MARK, width=2)
        draw.text((left + 4, 5), label, fill="black", font=font)
    return np.asarray(sheet)


def crop_grid(rows: list[list[tuple[str, np.ndarray]]], size: int = 96, zoom: int = 2) -> np.ndarray:
    """One row per image: the same size x size region of each method's output (picked as the most detailed
    region of the row's last image, the original), enlarged `zoom` times (nearest neighbour) and labelled."""
    cell = size * zoom
    font = ImageFont.load_default(size=14)
    sheet = Image.new("RGB", (len(rows[0]) * (cell + GAP) - GAP, len(rows) * (HEADER + cell + GAP) - GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        reference = row[-1][1]
        side_y, side_x = min(size, reference.shape[0]), min(size, reference.shape[1])
        y, x = detail_box(reference, side_y, side_x)
        top = r * (HEADER + cell + GAP)
        for c, (label, image) in enumerate(row):
            crop = _rgb(image[y:y + side_y, x:x + side_x]).resize((side_x * zoom, side_y * zoom), Image.Resampling.NEAREST)
            sheet.paste(crop, (c * (cell + GAP), top + HEADER))
            draw.text((c * (cell + GAP) + 3, top + 6), label, fill="black", font=font)
    return np.asarray(sheet)
