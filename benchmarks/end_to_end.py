"""End-to-end speed (issue #25): the whole process of upscaling a photo with this project's test.py
against a plain OpenCV dnn_superres script, each command its own process as a user runs it: wall time
and peak memory, side by side.

    python -m benchmarks.end_to_end --peers ../shared/peers     # -> results/end_to_end.json

Commands, x3 by default: OpenCV's FSRCNN (the baseline) and ESPCN graphs through a ten-line cv2 script
(written into --work-dir, run by this Python: read, upsample, write), and `test.py --low-res` with
weights/fsrcnn_x<s>.pth and weights/srcnn_x<s>.pth, from the repo root. Inputs, made into --work-dir:
one --size colour PNG (scikit-image's coffee, cropped to the size's aspect, resized by Pillow) and a
folder of --folder-size such PNGs (different crops of six bundled images), which the cv2 script loops
over in one process and test.py takes as its --image-file.

Each command runs once first, uncounted (the file cache; test.py's first-use ONNX export into its
cache), then in pairs right after the baseline: --pairs pairs per command on the one image,
--folder-pairs on the folder. Reported: the median wall time (time.perf_counter around the process),
its ratio to the baseline's median, the peak RSS (the child's own ru_maxrss, from os.wait4; the max
over the counted runs) and, for the folder, images per second. Every run must exit 0 and write each
output at `scale` times its input's size (test.py's `<name>_<network>_x<s>.png`), or the script stops
with one `error: ...` line. Times include whatever else the machine runs: keep it idle.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from skimage import data as skimage_data
from tqdm import tqdm

import cli
from files import check_writable, make_folder, write_text
from path_choice import cpu_model
from peers import PeerError, graph_path

REPO = Path(__file__).resolve().parent.parent  # test.py runs from here, as the README runs it
BASELINE = "opencv-fsrcnn"
LABELS = {"opencv-fsrcnn": "OpenCV FSRCNN (cv2 script)", "opencv-espcn": "OpenCV ESPCN (cv2 script)",
          "test.py-fsrcnn": "test.py, fsrcnn_x{s}.pth", "test.py-srcnn": "test.py, srcnn_x{s}.pth"}
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")  # colour, bundled
OPENCV_SCRIPT = '''\
import pathlib, sys
import cv2
graph, name, scale, source, out = sys.argv[1:]
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(graph)
sr.setModel(name, int(scale))
source = pathlib.Path(source)
for path in sorted(source.glob("*.png")) if source.is_dir() else [source]:
    if not cv2.imwrite(f"{out}/{path.stem}_{name}_x{scale}.png", sr.upsample(cv2.imread(str(path)))):
        sys.exit(f"cannot write into {out}")
'''

Commands = dict[str, list[str]]


class BenchmarkError(Exception):
    """A command that failed or wrote the wrong output; the message names it, for one `error: ...` line."""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    cli.add_scale(parser)
    parser.add_argument("--size", type=cli.photo_size, default=(640, 360), metavar="WxH",
                        help="the input photos' size (default: 640x360)")
    parser.add_argument("--folder-size", type=int, default=20, help="photos in the folder")
    parser.add_argument("--pairs", type=int, default=7, help="counted (baseline, command) pairs per command, one image")
    parser.add_argument("--folder-pairs", type=int, default=3, help="the same on the folder (0: no folder runs)")
    cli.add_peers(parser)
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"), help="holds fsrcnn_x<s>.pth and srcnn_x<s>.pth")
    parser.add_argument("--test-args", default="", help="more test.py arguments, one string, e.g. "
                        "--test-args='--inference-path eager' (default: none)")
    parser.add_argument("--work-dir", type=Path, help="where the photos, the cv2 script and the outputs go "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--output", type=Path, default=Path("results/end_to_end.json"), help="the JSON of every time")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Counts in range, and the files every command reads, before any work."""
    for flag, value, least in (("--folder-size", args.folder_size, 1), ("--pairs", args.pairs, 1),
                               ("--folder-pairs", args.folder_pairs, 0)):
        if value < least:
            parser.error(f"{flag} must be {least} or more, not {value}")
    for name in ("fsrcnn", "espcn"):
        if not graph_path(args.peers, name, args.scale).is_file():
            raise PeerError(f"{graph_path(args.peers, name, args.scale)}: no such file (see ../shared/peers/README.md)")
    for name in ("fsrcnn", "srcnn"):
        if not (args.weights_dir / f"{name}_x{args.scale}.pth").is_file():
            raise BenchmarkError(f"{args.weights_dir / f'{name}_x{args.scale}.pth'}: no such file")


def photo(source: str, fraction: float, offset: float, size: tuple[int, int]) -> Image.Image:
    """A crop of a bundled image with `size`'s aspect, `fraction` of the largest such crop wide, at
    `offset` (0..1) along the free space, resized by Pillow (bicubic) to `size`."""
    image = Image.fromarray(getattr(skimage_data, source)()).convert("RGB")
    aspect = size[0] / size[1]
    width = min(image.width, image.height * aspect) * fraction
    height = width / aspect
    left, top = (image.width - width) * offset, (image.height - height) * (1 - offset)
    return image.resize(size, Image.BICUBIC, box=(left, top, left + width, top + height))


def make_inputs(work: Path, size: tuple[int, int], count: int) -> tuple[Path, Path]:
    """work/photo.png (coffee, whole width) and work/photos/ of `count` different crops."""
    single = work / "photo.png"
    photo("coffee", 1.0, 0.5, size).save(single)
    folder = make_folder(work / "photos")
    for i in range(count):  # six sources x four crop widths: no two photos alike
        source, fraction = SOURCES[i % len(SOURCES)], (1.0, 0.8, 0.65, 0.5)[i // len(SOURCES) % 4]
        photo(source, fraction, (i * 0.37) % 1, size).save(folder / f"photo_{i:02d}.png")
    return single, folder


def build_commands(args: argparse.Namespace, script: Path, source: Path, out: Path) -> Commands:
    """{command name: argv}, each writing into out/<name>/; OpenCV FSRCNN (the baseline) first."""
    s = args.scale
    commands = {f"opencv-{name}": [sys.executable, str(script), str(graph_path(args.peers, name, s)), name, str(s),
                                   str(source), str(out / f"opencv-{name}")] for name in ("fsrcnn", "espcn")}
    for name in ("fsrcnn", "srcnn"):
        commands[f"test.py-{name}"] = [sys.executable, "test.py", "--image-file", str(source), "--low-res", "--scale",
                                       str(s), "--weights-file", str(args.weights_dir / f"{name}_x{s}.pth"),
                                       "--output-dir", str(out / f"test.py-{name}"), *shlex.split(args.test_args)]
    return commands


def run_once(name: str, argv: list[str], out: Path, log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one run of the command, in a fresh out/ folder; a failure is a
    BenchmarkError with the last line of its stderr."""
    shutil.rmtree(out, ignore_errors=True)
    make_folder(out)
    with open(log, "wb") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not all children's so far
        wall = time.perf_counter() - start
    process.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        how = f"exited with {code}" if code > 0 else f"was killed by signal {-code}"
        lines = log.read_text(errors="replace").strip().splitlines() or ["(nothing on stderr)"]
        raise BenchmarkError(f"{name} {how} ({shlex.join(argv)}): {lines[-1].strip()}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def check_outputs(name: str, folder: Path, count: int, size: tuple[int, int], scale: int) -> None:
    """`count` upscaled images in `folder`, each `size`: <name>_..._x<s>.png, test.py's bicubic and
    comparison images aside (whether it writes them or not)."""
    files = [path for path in sorted(folder.glob(f"*_x{scale}.png")) if "_bicubic_" not in path.name]
    if len(files) != count:
        raise BenchmarkError(f"{name} wrote {len(files)} upscaled image(s) into {folder}, not {count}")
    for path in files:
        with Image.open(path) as image:
            if image.size != size:
                raise BenchmarkError(f"{name} wrote {path} at {image.width}x{image.height}, not {size[0]}x{size[1]}")


def measure(commands: Commands, out: Path, inputs: int, pairs: int, args: argparse.Namespace,
            progress: tqdm) -> dict[str, dict]:
    """{name: its warm-up and counted runs}: one uncounted run of each command, then `pairs` rounds of
    (baseline, command) for every other command, each run checked."""
    size = (args.size[0] * args.scale, args.size[1] * args.scale)
    raw = {name: {"wall_s": [], "peak_rss_mib": []} for name in commands}

    def run(name: str, counted: bool) -> None:
        progress.set_description(f"{out.name}: {name}")
        wall, rss = run_once(name, commands[name], out / name, out / f"{name}.stderr")
        check_outputs(name, out / name, inputs, size, args.scale)
        if counted:
            raw[name]["wall_s"].append(wall)
            raw[name]["peak_rss_mib"].append(rss)
        else:
            raw[name].update(warmup_wall_s=wall, warmup_peak_rss_mib=rss)
        progress.update()

    for name in commands:
        run(name, counted=False)
    for _ in range(pairs):
        for name in [name for name in commands if name != BASELINE]:
            run(BASELINE, counted=True)
            run(name, counted=True)
    return raw


def summarize(raw: dict[str, dict], inputs: int) -> dict[str, dict]:
    """Each command's runs with their median wall, its ratio to the baseline's, the max peak RSS and
    images per second."""
    baseline = statistics.median(raw[BASELINE]["wall_s"])
    summary = {}
    for name, runs in raw.items():
        median = statistics.median(runs["wall_s"])
        summary[name] = {"median_wall_s": median, "ratio_to_baseline": median / baseline,
                         "max_peak_rss_mib": max(runs["peak_rss_mib"]), "images_per_s": inputs / median, **runs}
    return summary


def run_all(args: argparse.Namespace, work: Path) -> tuple[dict, dict]:
    """({mode: summary}, {mode: {name: argv}}) for the one image and, with --folder-pairs, the folder."""
    single, folder = make_inputs(work, args.size, args.folder_size if args.folder_pairs else 0)
    script = work / "opencv_sr.py"
    write_text(script, OPENCV_SCRIPT)
    modes = {"image": (single, 1, args.pairs)} | \
        ({"folder": (folder, args.folder_size, args.folder_pairs)} if args.folder_pairs else {})
    commands = {mode: build_commands(args, script, source, work / f"out-{mode}") for mode, (source, *_) in modes.items()}
    total = sum(len(LABELS) + 2 * (len(LABELS) - 1) * pairs for _, _, pairs in modes.values())
    results = {}
    with tqdm(total=total, unit="run", file=sys.stderr) as progress:
        for mode, (_, inputs, pairs) in modes.items():
            raw = measure(commands[mode], work / f"out-{mode}", inputs, pairs, args, progress)
            results[mode] = summarize(raw, inputs)
    return results, commands


def machine() -> dict:
    """The CPU the numbers were measured on, and how busy it was."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(),
            "threads_env": {key: os.environ[key] for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if key in os.environ}}


def versions() -> dict:
    """Python's and the packages' versions, from their metadata (nothing imported)."""
    found = {"python": sys.version.split()[0]}
    cv2 = importlib.metadata.packages_distributions().get("cv2", [])
    for key, dist in (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("cv2", cv2[0] if cv2 else None)):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError, ValueError):
            found[key] = f"{dist} {importlib.metadata.version(dist)}" if key == "cv2" else importlib.metadata.version(dist)
    return found


def markdown(report: dict) -> str:
    """One row per command: the one image's median wall, ratio and peak RSS; the folder's images/s,
    wall ratio and peak RSS."""
    s, (width, height), settings = report["settings"]["scale"], report["settings"]["size"], report["settings"]
    folder = report["results"].get("folder", {})
    title = (f"End to end, x{s}: a {width}x{height} PNG to {width * s}x{height * s}, and a folder of "
             f"{settings['folder_size']}; {report['machine']['cpu']}, {report['machine']['cores']} cores, load "
             f"{report['machine']['load_average'][0]:.2f} before; medians of {settings['pairs']} pairs (folder: "
             f"{settings['folder_pairs']})")
    header = ("| command | one image: wall (s) | x OpenCV FSRCNN | peak RSS (MiB) | folder: images/s | "
              "x OpenCV FSRCNN (wall) | peak RSS (MiB) |")
    lines = [title, "", header, "|---|---|---|---|---|---|---|"]
    for name, one in report["results"]["image"].items():
        many = folder.get(name)
        cells = [f"{many['images_per_s']:.2f}", f"{many['ratio_to_baseline']:.2f}x",
                 f"{many['max_peak_rss_mib']:.0f}"] if many else ["-"] * 3
        lines.append(f"| {LABELS[name].format(s=s)} | {one['median_wall_s']:.2f} | {one['ratio_to_baseline']:.2f}x | "
                     f"{one['max_peak_rss_mib']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def work_folder(path: Path | None) -> Iterator[Path]:
    """--work-dir (kept), or a temporary folder removed afterwards."""
    if path is not None:
        yield make_folder(path).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="end_to_end_") as folder:
        yield Path(folder)


@cli.one_line_errors(BenchmarkError, PeerError)
def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    command = shlex.join(["python", "-m", "benchmarks.end_to_end", *sys.argv[1:]])
    args.peers, args.weights_dir = args.peers.resolve(), args.weights_dir.resolve()  # the children run in the repo root

    check_args(parser, args)
    check_writable(make_folder(args.output.parent))  # before the work, not after it
    before = machine()
    with work_folder(args.work_dir) as work:
        results, commands = run_all(args, work)
    settings = {"scale": args.scale, "size": list(args.size), "folder_size": args.folder_size, "pairs": args.pairs,
                "folder_pairs": args.folder_pairs, "test_args": args.test_args, "baseline": BASELINE}
    report = {"command": command, "settings": settings, "machine": before, "load_average_after": os.getloadavg(),
              "versions": versions(), "commands": commands, "opencv_script": OPENCV_SCRIPT, "results": results}
    write_text(args.output, json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
