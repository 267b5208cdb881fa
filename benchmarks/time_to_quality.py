"""Time-to-quality of a train.py run: the training wall-clock (validation not counted, summed over
--resume sessions) at which its validation PSNR first reached a target, with the curve it got there by.

    python -m benchmarks.time_to_quality weights/training/srcnn_x3_recipe/earlier_versions/cpu_bf16 --target 32.75

The clock is train.py's `time/train_seconds` scalar, logged at every validation; runs from before it
existed have none and are refused. A speedrun-style record: the run's own folder holds its command
(TensorBoard's `args` text) and its machine is the reader's to state beside the number.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cli
from files import write_text
from run_logs import clock_curve, first_reaching


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("run", type=Path, help="a train.py run folder")
    parser.add_argument("--target", type=float, required=True, help="validation PSNR to reach, dB")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the curve and the result as JSON here (default: print only)")
    return parser


@cli.one_line_errors(ValueError)
def main() -> None:
    args = build_parser().parse_args()
    rows = clock_curve(args.run)
    hit = first_reaching(rows, args.target)
    for row in rows:
        print(f"{row['minutes']:8.1f} min  step {row['step']:7d}  {row['psnr']:.3f} dB")
    best = max(rows, key=lambda row: row["psnr"])
    print(f"{args.run}: best {best['psnr']:.3f} dB at {best['minutes']:.1f} min; " +
          (f"reached {args.target} dB at {hit['minutes']:.1f} min (step {hit['step']})" if hit
           else f"{args.target} dB not reached"))
    if args.output:
        write_text(args.output, json.dumps({"run": str(args.run), "target": args.target, "reached": hit,
                                            "best": best, "curve": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
