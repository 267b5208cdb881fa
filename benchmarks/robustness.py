"""How each method holds up when the LR image was not made the way it was trained for (issue #23): mean
Y-PSNR / SSIM of bicubic, OpenCV's FSRCNN and ESPCN (dnn_superres, as a user runs them), this project's
protocol weights and its robust weights, for every degradation of degradations.TABLE and every scale.

    python -m benchmarks.robustness --data data --peers ../shared/peers   # -> results/robustness.json and .md

Each set is a folder of HR images under --data (a benchmark set's x<scale>/ folder where it has one,
whose *_HR images are used; any other folder, all its images), each modcropped by the scale. The LR
image is made from the HR one by degradations.apply, once, and every method gets that same LR; every
output is scored by evaluate.py against the HR image (Y of MATLAB's rgb2ycbcr, 8 bits, `scale` pixels
shaved). The networks run eager fp32 by default, as weights/publish.py scores them. A method whose
weights or graph file is missing (the robust weights until they are trained) is skipped with a warning
and shows as "-"; a network's cell below bicubic's PSNR is marked with a *.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

import cli
import degradations
from degradations import Degradation
from evaluate import Method, bicubic_method, evaluate_method, network_method
from files import check_writable, make_folder, write_text
from inference import Upscaler, choose_device
from models import WeightsError, load_model
from peers import PeerError, OpenCVPeer, graph_path
from utils import MIN_MEASURED_SIDE, ImageError, list_images, load_image, modcrop

SETS = ("Set5", "Set14", "SunHays80/val")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("results")  # the repo's table, which --output-dir's default writes
PEERS = {"opencv-fsrcnn": "fsrcnn", "opencv-espcn": "espcn", "opencv-fsrcnn-small": "fsrcnn-small"}
ISSUE_PEERS = ("opencv-fsrcnn", "opencv-espcn")  # issue #23's bar; FSRCNN-small is a weaker FSRCNN, not a bar of its own
NETWORKS = {"srcnn": "srcnn_x{}.pth", "fsrcnn": "fsrcnn_x{}.pth", "srcnn-real": "srcnn_real_x{}.pth",
            "fsrcnn-real": "fsrcnn_real_x{}.pth"}  # method -> its weights file in --weights-dir, by scale
METHODS = ("bicubic", "opencv-fsrcnn", "opencv-espcn", "srcnn", "fsrcnn", "srcnn-real", "fsrcnn-real")
CHOICES = ("bicubic", *PEERS, *NETWORKS)

Pairs = list[tuple[str, np.ndarray, np.ndarray]]


def degradation(text: str) -> Degradation:
    """Degradation.parse for argparse, its message as the usage error."""
    try:
        return Degradation.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    cli.add_data(parser)
    parser.add_argument("--sets", nargs="+", default=list(SETS), metavar="SET",
                        help=f"folders of HR images, relative to --data (or absolute) (default: {' '.join(SETS)})")
    cli.add_scale(parser, several=True)
    parser.add_argument("--degradations", nargs="+", type=degradation, default=list(degradations.TABLE),
                        metavar="DEGRADATION", help="KERNEL[+blurSIGMA][+jpegQUALITY] each "
                        f"(default: {' '.join(map(str, degradations.TABLE))})")
    parser.add_argument("--methods", nargs="+", choices=CHOICES, default=list(METHODS), metavar="METHOD",
                        help=f"the table's columns, of {', '.join(CHOICES)} (default: {' '.join(METHODS)})")
    cli.add_peers(parser)
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"),
                        help="holds " + ", ".join(name.format("<s>") for name in NETWORKS.values()))
    cli.add_inference_path(parser, "eager", "how the networks run (eager: the same number on every run)")
    cli.add_device(parser)
    cli.add_output_dir(parser, RESULTS, "where robustness.json and robustness.md go")
    return parser


def method_file(args: argparse.Namespace, method: str, scale: int) -> Path | None:
    """The weights or graph file a method needs at `scale` (None for bicubic)."""
    if method in PEERS:
        return graph_path(args.peers, PEERS[method], scale)
    return args.weights_dir / NETWORKS[method].format(scale) if method in NETWORKS else None


def build_method(args: argparse.Namespace, method: str, scale: int) -> Method:
    """One column's Method at `scale`, from its file (which exists)."""
    if method == "bicubic":
        return bicubic_method(scale)
    if method in PEERS:
        return OpenCVPeer(args.peers, PEERS[method], scale)
    model, meta = load_model(method_file(args, method, scale), scale=scale)
    return network_method(Upscaler(model, args.inference_path, choose_device(args.device)), scale, meta.get("color", "y"))


def build_methods(args: argparse.Namespace) -> tuple[dict[int, dict[str, Method]], dict[str, list[str]]]:
    """({scale: {method: Method}}, {method: the files it lacks}): a method is skipped where its file is
    missing, with one warning line per method; a file that is there but broken is an error."""
    methods, missing = {}, {}
    for scale in args.scale:
        methods[scale] = {}
        for method in args.methods:
            path = method_file(args, method, scale)
            if path is not None and not path.is_file():
                missing.setdefault(method, []).append(str(path))
            else:
                methods[scale][method] = build_method(args, method, scale)
    for method, paths in missing.items():
        print(f"warning: {method} skipped where its file is missing: no {', '.join(paths)}", file=sys.stderr)
    return methods, missing


def short_of_the_full_table(args: argparse.Namespace, missing: dict[str, list[str]]) -> str | None:
    """Why this run would not make the whole default table (None when it would)."""
    if missing:
        return "no " + ", ".join(path for paths in missing.values() for path in paths)
    defaults = build_parser()
    as_text = lambda value: list(map(str, value)) if isinstance(value, list) else str(value)
    what_it_holds = ("sets", "scale", "degradations", "methods", "weights_dir", "inference_path")
    changed = [name.replace("_", "-") for name in what_it_holds
               if as_text(getattr(args, name)) != as_text(defaults.get_default(name))]
    return "--" + ", --".join(changed) + " not the default" if changed else None


def hr_images(folder: Path, scale: int) -> list[tuple[str, np.ndarray]]:
    """(name, HR image modcropped by `scale`) of a set: its x<scale>/ folder's *_HR images where it has
    one (a benchmark folder), else the folder's own *_HR images, else all its images."""
    folder = folder / f"x{scale}" if (folder / f"x{scale}").is_dir() else folder
    files = list_images(folder)
    chosen = [path for path in files if path.stem.endswith("_HR")] or [p for p in files if not p.stem.endswith("_LR")]
    if not chosen:
        raise ValueError(f"{folder}: no HR images found")
    images = []
    for path in chosen:
        hr = modcrop(load_image(path), scale)
        if min(hr.shape[:2]) - 2 * scale < MIN_MEASURED_SIDE:
            raise ImageError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small to measure at x{scale}")
        images.append((path.stem.removesuffix("_HR"), hr))
    return images


def degraded_pairs(images: list[tuple[str, np.ndarray]], scale: int, how: Degradation) -> Pairs:
    """(name, hr, lr) with the LR made by `how`: made once, so every method gets the same LR."""
    return [(name, hr, degradations.apply(hr, scale, how)) for name, hr in images]


def score_all(args: argparse.Namespace, methods: dict[int, dict[str, Method]]) -> tuple[dict, dict]:
    """({set: {"x<s>": {degradation: {method: {"psnr", "ssim"}}}}}, {set: {"x<s>": images}}), one
    evaluate_method call per cell, under one progress bar."""
    total = len(args.sets) * len(args.degradations) * sum(len(by_name) for by_name in methods.values())
    results, counts = {}, {}
    with tqdm(total=total, unit="cell", file=sys.stderr) as progress:
        for scale, by_name in methods.items():
            for name in args.sets:
                images = hr_images(args.data / name, scale)
                counts.setdefault(name, {})[f"x{scale}"] = len(images)
                for how in args.degradations:
                    pairs = degraded_pairs(images, scale, how)
                    cell = results.setdefault(name, {}).setdefault(f"x{scale}", {}).setdefault(str(how), {})
                    for method, run in by_name.items():
                        progress.set_description(f"{name} x{scale} {how} {method}")
                        mean = evaluate_method(run, pairs, scale)["mean"]
                        cell[method] = {"psnr": mean["psnr"], "ssim": mean["ssim"]}
                        progress.update()
    return results, counts


def cell_text(scores: dict | None, bicubic: dict | None, method: str) -> str:
    """"PSNR / SSIM", with a * where a network is below bicubic's PSNR; "-" where the method was skipped."""
    if scores is None:
        return "-"
    below = method != "bicubic" and bicubic is not None and scores["psnr"] < bicubic["psnr"]
    return f"{scores['psnr']:.2f} / {scores['ssim']:.4f}" + ("*" if below else "")


def margins(results: dict, method: str, against: tuple[str, ...]) -> list[tuple[float, str]]:
    """(method's PSNR minus the best of `against`, "set xS degradation") for every cell where all were run;
    none when there is nothing to compare against."""
    found = []
    for name, by_scale in results.items():
        for scale, rows in by_scale.items():
            for how, cell in rows.items():
                if against and method in cell and all(other in cell for other in against):
                    best = max(cell[other]["psnr"] for other in against)
                    found.append((cell[method]["psnr"] - best, f"{name} {scale} {how}"))
    return found


def summary(report: dict) -> list[str]:
    """Per network, how many cells it is above bicubic and above the better of OpenCV's FSRCNN and ESPCN, with
    its closest or worst cell for each: issue #23's acceptance read off the table, not counted by hand."""
    methods = report["settings"]["methods"]
    peers = tuple(m for m in ISSUE_PEERS if m in methods)
    bar = " and ".join(peers) or "no OpenCV network (none run)"
    lines = ["", "## Cell counts", "", f"PSNR above bicubic, and above the better of {bar}; in brackets the cell with "
             "the smallest margin (negative: below).", "",
             "| method | above bicubic | above the better OpenCV network |", "|---|---|---|"]
    for method in methods:
        if method == "bicubic" or method in PEERS:
            continue
        texts = []
        for against in (("bicubic",), peers):
            found = margins(report["results"], method, against)
            worst = min(found, default=None)
            texts.append(f"{sum(gap > 0 for gap, _ in found)} of {len(found)} ({worst[0]:+.2f}, {worst[1]})" if worst else "-")
        lines.append(f"| {method} | " + " | ".join(texts) + " |")
    return lines


def markdown(report: dict) -> str:
    """The readable tables: one per set and scale, a row per degradation, a column per method."""
    settings, methods = report["settings"], report["settings"]["methods"]
    lines = ["# Robustness to the degradation", "", "```bash", report["command"], "```", "",
             "Mean Y-PSNR (dB) / SSIM against the HR image (MATLAB rgb2ycbcr Y, 8 bits, `scale` pixels shaved); "
             "LR made from HR by `degradations.apply` (KERNEL[+blurSIGMA][+jpegQUALITY]), the same LR for every "
             f"method; networks by the {settings['inference_path']} path. `*`: below bicubic's PSNR. "
             "`-`: not run (its weights or graph file is missing)."]
    for name, by_scale in report["results"].items():
        for scale, rows in by_scale.items():
            lines += ["", f"## {name} {scale} ({report['images'][name][scale]} images)", "",
                      "| degradation | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
            for how, cell in rows.items():
                lines.append(f"| {how} | " + " | ".join(cell_text(cell.get(m), cell.get("bicubic"), m) for m in methods) + " |")
    return "\n".join(lines + summary(report))


def opencv_version() -> str | None:
    try:
        import cv2
    except ImportError:
        return None
    return cv2.__version__


def settings(args: argparse.Namespace) -> dict:
    """What the numbers depend on, kept beside them in the JSON."""
    return {"data": str(args.data), "sets": args.sets, "scales": args.scale, "degradations": list(map(str, args.degradations)),
            "methods": args.methods, "peers": str(args.peers), "weights_dir": str(args.weights_dir),
            "inference_path": args.inference_path, "device": args.device, "opencv": opencv_version()}


def write_report(output_dir: Path, report: dict) -> str:
    table = markdown(report)
    write_text(output_dir / "robustness.json", json.dumps(report, indent=1) + "\n")
    write_text(output_dir / "robustness.md", table + "\n")
    return table


@cli.one_line_errors(WeightsError, PeerError, ImageError, ValueError)
def main() -> None:
    args = build_parser().parse_args()
    command = shlex.join(["python", "-m", "benchmarks.robustness", *sys.argv[1:]])
    args.device = str(choose_device(args.device))  # recorded as what it resolved to; no CUDA fails here, not after scoring

    check_writable(make_folder(args.output_dir))  # before the work, not after it
    methods, missing = build_methods(args)
    if args.output_dir.resolve() == (ROOT / RESULTS).resolve() and (gap := short_of_the_full_table(args, missing)):
        raise SystemExit(f"error: {gap}: {RESULTS}/robustness.* is the repo's full table, made whole or not at all; "
                         "write this one to another --output-dir")
    results, counts = score_all(args, methods)
    report = {"command": command, "settings": settings(args), "skipped": missing, "images": counts, "results": results}
    print(write_report(args.output_dir, report))


if __name__ == "__main__":
    main()
