"""Evaluate the shipped weights on Set5 and Set14 at x2, x3 and x4 and write the README's results table.

    python benchmarks/eval_benchmarks.py --data ../shared/data     # -> results/benchmarks.md, .json, README.md

Each cell is exactly what `python test.py --dataset DATA/SET/xS --scale S` prints as its mean. The
table also replaces the one between the results markers of README.md, so the README never drifts
from the shipped weights (tests/test_readme.py checks it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo's test.py, ahead of Python's own `test` package

from models import Upscaler, load_model  # noqa: E402
from test import evaluate_dataset  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
# SRCNN 9-5-5 trained on ImageNet: TPAMI 2015, Tables 2 and 3 (PSNR dB, SSIM)
PAPER = {("Set5", 2): (36.66, 0.9542), ("Set5", 3): (32.75, 0.9090), ("Set5", 4): (30.49, 0.8628),
         ("Set14", 2): (32.45, 0.9067), ("Set14", 3): (29.30, 0.8215), ("Set14", 4): (27.50, 0.7513)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="folder with Set5/ and Set14/")
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args()

    rows, results = [], {}
    for name in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            model, _ = load_model(args.weights_dir / f"srcnn_x{scale}.pth")
            mean = evaluate_dataset(Upscaler(model), args.data / name / f"x{scale}", scale)["mean"]
            results[f"{name}_x{scale}"] = mean
            paper_psnr, paper_ssim = PAPER[(name, scale)]
            met = "yes" if mean["srcnn_psnr"] >= paper_psnr else "no"
            rows.append(f"| {name} | x{scale} | {mean['bicubic_psnr']:.2f} / {mean['bicubic_ssim']:.4f} | "
                        f"**{mean['srcnn_psnr']:.2f} / {mean['srcnn_ssim']:.4f}** | {paper_psnr:.2f} / {paper_ssim:.4f} | {met} |")
    table = "\n".join(["| set | scale | bicubic | this repo (shipped weights) | paper, 9-5-5 ImageNet | paper's PSNR reached |",
                       "|---|---|---|---|---|---|", *rows])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text(table + "\n")
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START in text and END in text:
        readme.write_text(text[: text.index(START) + len(START)] + "\n" + table + "\n" + text[text.index(END):])
    print(table)


if __name__ == "__main__":
    main()
