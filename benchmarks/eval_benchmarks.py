"""Evaluate the shipped SRCNN weights on Set5 and Set14 at x2, x3 and x4: the README's results table.

    python -m benchmarks.eval_benchmarks --data data     # -> results/benchmarks.json, .md and README.md

Each cell is what `python test.py --dataset DATA/SET/xS --scale S --inference-path eager` prints as its
mean (both call evaluate.py); eager fp32 PyTorch, as weights/publish.py scores, because it gives the same
number on every run (the default ONNX Runtime path agrees within 1e-4 dB). The numbers are kept as data in results/benchmarks.json; the Markdown table is made from
it and also replaces the one between the results markers of README.md (tests/test_readme.py checks both).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cli
from evaluate import evaluate_dataset, paper_results
from files import make_folder, write_text
from inference import Upscaler
from models import WeightsError, load_model

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"
SETS = ("Set5", "Set14")
WEIGHTS, RESULTS = Path("weights"), Path("results")  # the shipped files, and where their table is kept


def results_table(results: dict) -> str:
    """Markdown from {"Set5_x2": mean scores, ...}, beside the SRCNN paper's numbers."""
    rows = ["| set | scale | bicubic | this repo (shipped weights) | paper, 9-5-5 ImageNet | paper's PSNR reached |",
            "|---|---|---|---|---|---|"]
    for name in SETS:
        for scale in (2, 3, 4):
            mean, paper = results[f"{name}_x{scale}"], paper_results()["srcnn"][name][str(scale)]
            met = "yes" if mean["psnr"] >= paper["psnr"] else "no"
            rows.append(f"| {name} | x{scale} | {mean['bicubic_psnr']:.2f} / {mean['bicubic_ssim']:.4f} | "
                        f"**{mean['psnr']:.2f} / {mean['ssim']:.4f}** | {paper['psnr']:.2f} / {paper['ssim']:.4f} | {met} |")
    return "\n".join(rows)


def replace_between_markers(path: Path, table: str) -> None:
    text = path.read_text()
    if START in text and END in text:
        write_text(path, text[: text.index(START) + len(START)] + "\n" + table + "\n" + text[text.index(END):])


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    cli.add_data(parser)
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS,
                        help="holds srcnn_x{2,3,4}.pth (other than weights/: with another --output-dir)")
    cli.add_output_dir(parser, RESULTS, "where benchmarks.json and benchmarks.md go")
    return parser


@cli.one_line_errors(WeightsError, ValueError)
def main() -> None:
    args = build_parser().parse_args()
    tracked = args.output_dir.resolve() == (ROOT / RESULTS).resolve()
    if tracked and args.weights_dir.resolve() != (ROOT / WEIGHTS).resolve():
        raise SystemExit(f"error: {RESULTS}/benchmarks.* and README.md hold the shipped weights' table; "
                         f"write {args.weights_dir}'s to another --output-dir")

    results = {}
    for name in SETS:
        for scale in (2, 3, 4):
            model, _ = load_model(args.weights_dir / f"srcnn_x{scale}.pth")
            results[f"{name}_x{scale}"] = evaluate_dataset(Upscaler(model, "eager"), args.data / name / f"x{scale}", scale)["mean"]
    table = results_table(results)
    make_folder(args.output_dir)
    write_text(args.output_dir / "benchmarks.json", json.dumps(results, indent=1) + "\n")
    write_text(args.output_dir / "benchmarks.md", table + "\n")
    if tracked:  # README's table is the shipped files', as results/ is
        replace_between_markers(ROOT / "README.md", table)
    print(table)


if __name__ == "__main__":
    main()
