"""Set5 and Set14 PSNR of the best weights of each training run of a model, in the order the runs ran.

    python -m benchmarks.run_history weights/training/srcnn_x4 --data data

Every archived run keeps its best.pth, the weights that run would have shipped. Scoring them all with
evaluate.py, as test.py does, shows whether more training still moves the published numbers, on the set the runs
were picked by (Set5, whose per-epoch curves are results/curves_val_psnr.png) and on one they never saw
(Set14). Epochs are counted as benchmarks/plot_curves.py counts them: every epoch each run trained, not only
those up to its best, summed in run order.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cli
from evaluate import evaluate_dataset, paper_psnr
from inference import Upscaler
from models import load_model
from run_logs import read_scalar, stages, steps_per_epoch

SETS = ("Set5", "Set14")


def history(folder: Path, data: Path) -> list[dict]:
    """One row per run of `folder`: its name, the epochs trained by its end, and its best.pth's PSNRs."""
    rows, epochs = [], 0.0
    for run in stages(folder):
        model, meta = load_model(run / "best.pth")
        scale = meta["scale"]
        validated = read_scalar(run, "val/psnr")
        if not validated:
            raise SystemExit(f"error: {run}: no val/psnr in its TensorBoard logs")
        epochs += validated[-1][0] / steps_per_epoch(run)
        # channels_last, not test.py's default ONNX Runtime path (within 1e-4 dB of it): no exported graph
        # cached per run
        upscaler = Upscaler(model, "channels_last")
        psnr = {name: evaluate_dataset(upscaler, data / name / f"x{scale}", scale, meta.get("color", "y"))["mean"]["psnr"]
                for name in SETS}
        rows.append({"run": run.name, "epochs": epochs, "scale": scale, "model": meta.get("model", "srcnn"), **psnr})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: each PSNR with its change from the run before; the SRCNN paper's row last, for SRCNN."""
    lines = ["| run | epochs in all | " + " | ".join(SETS) + " |", "|---|---|" + "---|" * len(SETS)]
    for before, row in zip([None, *rows], rows):
        cells = [f"{row[s]:.3f}" + (f" ({row[s] - before[s]:+.3f})" if before else "") for s in SETS]
        lines.append(f"| {row['run']} | {row['epochs']:.0f} | " + " | ".join(cells) + " |")
    if rows[-1]["model"] == "srcnn":
        lines.append("| paper, 9-5-5 ImageNet | | " + " | ".join(f"{paper_psnr('srcnn', s, rows[-1]['scale']):.2f}" for s in SETS) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("models", type=Path, nargs="+", help="folders of archived runs, e.g. weights/training/srcnn_x4")
    cli.add_data(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    for folder in args.models:
        print(f"\n{folder.name}\n\n{table(history(folder, args.data))}", flush=True)


if __name__ == "__main__":
    main()
