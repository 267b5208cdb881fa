"""Turn a training checkpoint into shipped weights: the model state plus metadata with its protocol
PSNR/SSIM on the benchmark sets, then refresh the sha256 table of weights/README.md.

    python weights/publish.py runs/srcnn_x3/best.pth --scale 3 --data ../shared/data
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo's test.py, ahead of Python's own `test` package

from models import Upscaler, load_model  # noqa: E402
from test import evaluate_dataset  # noqa: E402


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="best.pth or last.pth of a train.py run")
    parser.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="folder with Set5/ and Set14/")
    parser.add_argument("--training-data", default="T91 (91 images), paper preset: 33x33 patches, stride 14")
    parser.add_argument("--history", help="how the weights were trained when it took several runs (stored in meta)")
    args = parser.parse_args()

    model, meta = load_model(args.checkpoint, scale=args.scale)
    color = meta.get("color", "y")
    scores = {}
    for name in ("Set5", "Set14"):
        result = evaluate_dataset(Upscaler(model, "eager"), args.data / name / f"x{args.scale}", args.scale, color)
        scores[name] = {"psnr": round(result["mean"]["srcnn_psnr"], 4), "ssim": round(result["mean"]["srcnn_ssim"], 4)}
    kind = model.config()["model"] + ("" if color == "y" else f"_{color}")  # srcnn, fsrcnn, srcnn_rgb, ...
    out = ROOT / "weights" / f"{kind}_x{args.scale}.pth"
    info = {**model.config(), "arch": meta.get("arch", "9-5-5"), "color": color,
            "scale": args.scale, "training_data": args.training_data, "epochs": meta.get("epoch"),
            "steps": meta.get("step"), "protocol": "Y (MATLAB rgb2ycbcr), shave = scale, range 255", "benchmarks": scores,
            **({"history": args.history} if args.history else {})}
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"model": model.state_dict(), "meta": info}, tmp)
    tmp.replace(out)
    card = ROOT / "weights" / "README.md"
    text = card.read_text()
    row = f"| `{out.name}` | {args.scale} | {scores['Set5']['psnr']:.2f} | {scores['Set14']['psnr']:.2f} | `{sha256(out)}` |"
    pattern = re.compile(rf"^\| `{re.escape(out.name)}` \|.*$", re.M)
    card.write_text(pattern.sub(row, text) if pattern.search(text) else text.rstrip("\n") + "\n" + row + "\n")
    print(f"wrote {out}: Set5 {scores['Set5']['psnr']:.2f} dB, Set14 {scores['Set14']['psnr']:.2f} dB\n{row}")


if __name__ == "__main__":
    main()
