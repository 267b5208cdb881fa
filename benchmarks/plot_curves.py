"""Plot validation PSNR against epoch from train.py's TensorBoard logs, one panel per run, as a PNG.

    python benchmarks/plot_curves.py runs/srcnn_x2 runs/srcnn_x3 runs/srcnn_x4   # -> results/curves_val_psnr.png

Dashed lines: the run's bicubic PSNR (grey) and, for SRCNN runs at x2/x3/x4, the paper's Set5 target (red).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

PAPER_SET5 = {2: 36.66, 3: 32.75, 4: 30.49}
W, H, MARGIN = 420, 300, 48


def read_scalar(run: Path, tag: str) -> list[float]:
    """One value per step (the last written, should a resumed run have logged a step twice)."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [v for _, v in sorted({e.step: e.value for e in events.Scalars(tag)}.items())]


def panel(title: str, values: list[float], lines: dict[str, tuple[float, str]]) -> Image.Image:
    image = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(image)
    levels = values + [v for v, _ in lines.values()]
    low, high = math.floor(min(levels) - 0.2), math.ceil(max(levels) + 0.2)
    x = lambda i: MARGIN + (W - 2 * MARGIN) * i / max(1, len(values) - 1)
    y = lambda v: H - MARGIN - (H - 2 * MARGIN) * (v - low) / (high - low)
    draw.rectangle([MARGIN, MARGIN, W - MARGIN, H - MARGIN], outline="black")
    for level in range(low, high + 1):
        draw.line([MARGIN - 4, y(level), MARGIN, y(level)], fill="black")
        draw.text((6, y(level) - 6), f"{level} dB", fill="black")
    for epoch in range(0, len(values) + 1, max(1, len(values) // 5)):
        if epoch >= 1:
            draw.text((x(epoch - 1) - 6, H - MARGIN + 6), str(epoch), fill="black")
    for label, (value, colour) in lines.items():
        for start in range(MARGIN, W - MARGIN, 8):
            draw.line([start, y(value), min(start + 4, W - MARGIN), y(value)], fill=colour)
        draw.text((W - MARGIN - 6 * len(label), y(value) - 13), label, fill=colour)
    draw.line([(x(i), y(v)) for i, v in enumerate(values)], fill="navy", width=2)
    draw.text((MARGIN, 16), title, fill="black")
    draw.text((W // 2 - 15, H - 18), "epoch", fill="black")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="train.py run folders")
    parser.add_argument("--output", type=Path, default=Path("results") / "curves_val_psnr.png")
    args = parser.parse_args()
    panels = []
    for run in args.runs:
        psnr, bicubic = read_scalar(run, "val/psnr"), read_scalar(run, "val/bicubic_psnr")
        if not psnr:
            raise SystemExit(f"error: {run}: no val/psnr in its TensorBoard logs")
        scale = next((s for s in PAPER_SET5 if run.name.endswith(f"x{s}")), None)
        lines = {"bicubic": (bicubic[-1], "grey")} if bicubic else {}
        if scale and run.name.startswith("srcnn"):
            lines["paper"] = (PAPER_SET5[scale], "red")
        panels.append(panel(f"{run.name}: val PSNR, best {max(psnr):.2f} dB after {len(psnr)} epochs", psnr, lines))
    sheet = Image.new("RGB", (W * len(panels), H), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, (i * W, 0))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
