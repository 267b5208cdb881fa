"""Plot validation PSNR against epoch from train.py's TensorBoard logs, one panel per model, as a PNG.

    python -m benchmarks.plot_curves runs/srcnn_x2 runs/srcnn_x3 runs/srcnn_x4   # -> results/curves_val_psnr.png
    python -m benchmarks.plot_curves runs/recipes/srcnn_x3 --clock --output runs/recipes/srcnn_x3/curve.png

A folder is one train.py run, or a model trained in stages: then its subfolders are the runs, in the
order they ran (weights/training/srcnn_x3/{cpu,gpu1,gpu2,gpu3}), drawn end to end with dotted lines
between them. Epochs come from each run's steps and best.pth's steps per epoch (batch sizes differ by stage);
--clock draws against train.py's training clock instead (time-to-quality, validation not counted).
Dashed lines: the bicubic PSNR (grey) and, for SRCNN 9-5-5 and FSRCNN validated on Set5 (best.pth's
record, whatever the folder is called), their paper's Set5 result (red). Run names go in the lowest free
row, clear of the curve and of each other.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import cli
from evaluate import paper_psnr
from files import make_folder
from run_logs import best_meta, clock_curve, read_scalar, stages, steps_per_epoch
from utils import save_image

W, H, MARGIN = 420, 300, 48


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether two (left, top, right, bottom) boxes intersect."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def panel(title: str, curve: list[tuple[float, float]], boundaries: list[tuple[float, str]],
          lines: dict[str, tuple[float, str]], x_label: str = "epoch") -> Image.Image:
    image = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(image)
    levels = [v for _, v in curve] + [v for v, _ in lines.values()]
    low, high = math.floor(min(levels) - 0.2), math.ceil(max(levels) + 0.2)
    last = max(curve[-1][0], 1.0)
    x = lambda epoch: MARGIN + (W - 2 * MARGIN) * epoch / last
    y = lambda v: H - MARGIN - (H - 2 * MARGIN) * (v - low) / (high - low)
    draw.rectangle([MARGIN, MARGIN, W - MARGIN, H - MARGIN], outline="black")
    for level in range(low, high + 1):
        draw.line([MARGIN - 4, y(level), MARGIN, y(level)], fill="black")
        draw.text((6, y(level) - 6), f"{level} dB", fill="black")
    tick = 10 ** math.floor(math.log10(last / 2)) * (5 if last / 10 ** math.floor(math.log10(last / 2)) > 10 else 1)
    for epoch in range(0, int(last) + 1, max(1, int(tick))):
        draw.text((x(epoch) - 6, H - MARGIN + 6), str(epoch), fill="black")
    # Boxes that run names must not cover: the curve's points and the dashed lines' labels.
    taken = [(x(e) - 1, y(v) - 1, x(e) + 1, y(v) + 1) for e, v in curve]
    for label, (value, colour) in lines.items():
        for start in range(MARGIN, W - MARGIN, 8):
            draw.line([start, y(value), min(start + 4, W - MARGIN), y(value)], fill=colour)
        corner = (W - MARGIN - 6 * len(label), y(value) - 13)
        draw.text(corner, label, fill=colour)
        taken.append(draw.textbbox(corner, label))
    for epoch, name in boundaries:  # names from the bottom up, the lowest row that is free
        for start in range(MARGIN, H - MARGIN, 6):
            draw.point([(x(epoch), start)], fill="grey")
        width = draw.textlength(name)
        left = x(epoch) + 3 if x(epoch) + 3 + width < W - 2 else x(epoch) - 3 - width  # keep it inside the panel
        corner = next(c for c in ((left, H - MARGIN - 14 - 12 * row) for row in range(99))
                      if not any(overlap(draw.textbbox(c, name), box) for box in taken))
        draw.text(corner, name, fill="grey")
        taken.append(draw.textbbox(corner, name))
    draw.line([(x(e), y(v)) for e, v in curve], fill="navy", width=2)
    draw.text((MARGIN, 16), title, fill="black")
    draw.text((W // 2 - 3 * len(x_label), H - 18), x_label, fill="black")
    return image


def paper_line(run: Path) -> float | None:
    """The paper's Set5 PSNR for the network a run trained, if it validated on Set5: its best.pth says
    which network, scale and validation set (a robust run validates on SunHays80: no paper line)."""
    meta = best_meta(run)
    model = {"9-5-5": "srcnn", "fsrcnn": "fsrcnn"}.get(meta.get("arch"))
    if model is None or meta.get("color", "y") != "y" or "Set5" not in Path(meta.get("eval_file", "")).parts:
        return None
    return paper_psnr(model, "Set5", meta["scale"])


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="train.py run folders")
    parser.add_argument("--output", type=Path, default=Path("results") / "curves_val_psnr.png", help="the PNG to write")
    parser.add_argument("--clock", action="store_true",
                        help="against training minutes (train.py's time/train_seconds), not epochs")
    return parser


@cli.one_line_errors(ValueError)
def main() -> None:
    args = build_parser().parse_args()
    panels = []
    for folder in args.runs:
        curve, boundaries, bicubic, offset = [], [], [], 0.0
        runs = stages(folder)
        for run in runs:
            if len(runs) > 1:
                boundaries.append((offset, run.name))
            if args.clock:
                curve += [(offset + row["minutes"], row["psnr"]) for row in clock_curve(run)]
            else:
                per_epoch = steps_per_epoch(run)
                curve += [(offset + step / per_epoch, value) for step, value in read_scalar(run, "val/psnr")]
            offset = curve[-1][0] if curve else offset
            bicubic = read_scalar(run, "val/bicubic_psnr") or bicubic
        if not curve:
            raise SystemExit(f"error: {folder}: no val/psnr in its TensorBoard logs")
        lines = {"bicubic": (bicubic[-1][1], "grey")} if bicubic else {}
        paper = paper_line(runs[-1])
        if paper is not None:
            lines["paper"] = (paper, "red")
        best_at, best = max(curve, key=lambda point: point[1])  # the first of equals: when it was reached
        where = (f"at {best_at:.0f} of {offset:.0f} training minutes" if args.clock
                 else f"at epoch {best_at:.0f} of {offset:.0f}")
        panels.append(panel(f"{folder.name}: val PSNR, best {best:.2f} dB {where}", curve, boundaries, lines,
                            "training minutes" if args.clock else "epoch"))
    columns = min(3, len(panels))
    sheet = Image.new("RGB", (W * columns, H * math.ceil(len(panels) / columns)), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, (i % columns * W, i // columns * H))
    make_folder(args.output.parent)
    save_image(args.output, np.asarray(sheet))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
