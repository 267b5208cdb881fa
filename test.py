"""Super-resolve images with SRCNN or FSRCNN and compare with bicubic, on the SR protocol.

    python test.py                                            # scikit-image's coffee, x3, into output/
    python test.py --sample astronaut --scale 4               # another bundled image
    python test.py --image-file photo.png --scale 2           # an HR image: degrade, restore, measure
    python test.py --image-file small.png --low-res --scale 3 # a real low-resolution photo: just upscale
    python test.py --dataset data/Set5/x3 --scale 3 --json set5_x3.json
    python test.py --scale 3 --export-onnx srcnn_x3.onnx      # the shipped x3 network as ONNX

A Y network (the default) restores the Y channel and Cb/Cr stay bicubic; a 3-channel network
(preprocess.py --channels 3) writes colour directly. SRCNN reads the bicubic-upscaled image, FSRCNN
the LR image. PSNR/SSIM are measured by evaluate.py: Y (MATLAB rgb2ycbcr, 8-bit), `scale` pixels
shaved, against the original HR.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from skimage import data as skimage_data

import cli
from evaluate import evaluate_dataset, psnr_ssim, upscale
from files import WriteError, check_writable, make_folder, write_text
from graphs import GraphUpscaler, cached_graph_path, ready_graph
from hub import WEIGHTS_DIR, file_sha256
from path_choice import cached_rates, fastest, graph_pays
from utils import (COLORS, MAX_PIXELS, MIN_MEASURED_SIDE, ImageError, WeightsError, degrade, image_size, list_images,
                   load_image, modcrop, save_image, upscale_bicubic, y_channel)

# PyTorch (models.py, inference.py) is imported inside the functions that need it: it takes 1-2 s to
# import, longer than FSRCNN takes to upscale a photo, and a run on a ready ONNX graph never needs it.

SAMPLES = ["coffee", "astronaut", "chelsea", "rocket", "camera"]  # bundled with scikit-image, no download


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image-file", type=Path, help="an image or a folder of images (instead of --sample)")
    source.add_argument("--dataset", type=Path, help="a benchmark folder (*_HR/*_LR pairs, e.g. Set5/x3), a folder of "
                                                     "HR images, or a preprocess.py --eval file: score it")
    source.add_argument("--sample", choices=SAMPLES, default="coffee",
                        help="a scikit-image bundled image, used when no other input is given")
    parser.add_argument("--weights-file", help="a file or an http(s) URL (default: weights/srcnn_x<scale>.pth; with "
                                               "--low-res, the robust weights/srcnn_real_x<scale>.pth where present)")
    parser.add_argument("--sha256", help="expected checksum of a downloaded --weights-file "
                                         "(default: the one in weights/manifest.json)")
    parser.add_argument("--allow-http", action="store_true", help="allow a plain-http --weights-file URL")
    parser.add_argument("--padding", choices=["same", "valid"], help="override the padding stored with the weights")
    cli.add_scale(parser)
    parser.add_argument("--low-res", action="store_true",
                        help="the input is already low-resolution (a real photo, shrunk no one knows how): upscale only")
    parser.add_argument("--blur-sigma", type=float,
                        help="Gaussian blur before MATLAB-bicubic downscaling of HR input, in every mode; in a --dataset "
                             "of *_HR/*_LR pairs a blur means LR is made from HR (default: the blur the weights were "
                             "trained with, 0 for the T91 weights)")
    cli.add_output_dir(parser, Path("output"), "where the images go (untracked; results/ holds the showcase)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help="refuse larger images and larger outputs (decompression bombs; --low-res output is "
                             "scale^2 times its input)")
    cli.add_inference_path(parser, "auto", "how the network runs (auto: fp16 autocast on CUDA; on a CPU the "
                           "faster of channels_last and onnxruntime for this network, measured on first use and "
                           "cached, onnxruntime on the weights' ONNX graph without importing PyTorch)")
    parser.add_argument("--tile", type=int, default=0,
                        help="run the network on TILE x TILE input pieces (same output, bounded memory); 0: the "
                             "whole image, in tiles once its activations would pass a fixed budget "
                             "(tiles.ACTIVATION_BUDGET)")
    parser.add_argument("--compare", action="store_true",
                        help="also write the bicubic image and a side-by-side sheet for --low-res input (an HR input, "
                             "which has a ground truth to compare with, always gets them)")
    parser.add_argument("--json", type=Path, help="with --dataset: write the table as JSON (an infinite PSNR, of "
                                                  "identical images, as null)")
    parser.add_argument("--export-onnx", type=Path, metavar="FILE",
                        help="write the weights' network as ONNX (any height and width) and exit")
    cli.add_device(parser)
    return parser


def default_weights(args: argparse.Namespace) -> tuple[Path, str]:
    """The weights used without --weights-file, and why. A real LR photo was shrunk by an unknown method
    (OpenCV, a camera, JPEG), so --low-res takes the robust weights, trained on a mix of degradations; an HR
    input or a --dataset is degraded by the protocol, so the protocol weights keep the tables' meaning."""
    protocol, robust = WEIGHTS_DIR / f"srcnn_x{args.scale}.pth", WEIGHTS_DIR / f"srcnn_real_x{args.scale}.pth"
    if not args.low_res:
        return protocol, "the protocol weights (trained on MATLAB-bicubic LR)"
    if robust.exists():
        return robust, "the robust weights for real low-resolution photos (trained on a mix of degradations)"
    return protocol, f"the protocol weights (the robust {robust.name} is not in weights/)"


class Network(NamedTuple):
    """A network ready to run (inference.Upscaler or graphs.GraphUpscaler) and what test.py needs of it."""
    upscaler: object
    meta: dict
    name: str  # what output files and tables call it: srcnn, fsrcnn, srcnn_rgb, ...
    channels: int
    fixed_scale: int | None  # FSRCNN's deconvolution fixes its scale; SRCNN runs at any


def weights_path(args: argparse.Namespace) -> Path:
    """--weights-file (a URL is downloaded first), or default_weights' choice, said on stdout."""
    weights = args.weights_file
    if weights is None:
        weights, why = default_weights(args)
        print(f"weights: {weights.relative_to(WEIGHTS_DIR.parent)}, {why}")
    if str(weights).startswith(("http://", "https://")):
        from downloads import download_weights  # the network stack only when a URL is given
        weights = download_weights(str(weights), args.sha256, allow_http=args.allow_http)
    return Path(weights)


def cuda_driver_present() -> bool:
    """Whether PyTorch could see a GPU, without importing it: on Linux a GPU needs NVIDIA's driver
    (/proc/driver/nvidia), AMD's (/dev/kfd, ROCm builds call it cuda) or WSL2's (/dev/dxg); macOS has
    none; elsewhere only PyTorch can tell."""
    if sys.platform.startswith("linux"):
        return any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/kfd", "/dev/dxg"))
    return sys.platform != "darwin"


def graph_network(args: argparse.Namespace, weights: Path) -> tuple[Network | None, GraphUpscaler | None]:
    """(the network on the weights' ready ONNX graph, the graph) when this run may do without PyTorch:
    ONNX Runtime on the CPU (asked for, or auto's pick where there is no GPU and the cached measurement
    says the graph finishes this run first, PyTorch's import included), the weights as stored; else
    (None, the graph if there is one, for torch_network)."""
    on_cpu = args.device == "cpu" or (args.device == "auto" and not cuda_driver_present())
    if not (on_cpu and args.inference_path in ("auto", "onnxruntime") and args.padding is None and weights.is_file()):
        return None, None
    graph = ready_graph(weights, args.scale)
    if graph is None or args.inference_path == "onnxruntime":
        return (graph and network_of_graph(graph)), graph
    entry = cached_rates(graph.record["config"])
    if entry is None:  # not measured on this machine yet: torch_network measures it
        return None, graph
    # a --dataset imports PyTorch anyway (datasets.py), so only the rates count there
    if fastest(entry) == "onnxruntime" or (not args.dataset and graph_pays(entry, output_pixels(args))):
        return network_of_graph(graph), graph
    return None, graph


def network_of_graph(graph: GraphUpscaler) -> Network:
    record = graph.record
    return Network(graph, record["meta"], record["network"], record["channels"],
                   record["scale"] if record["takes_lr"] else None)


def output_pixels(args: argparse.Namespace) -> int:
    """How many pixels this run writes as results, from the images' headers (nothing is decoded)."""
    grow = args.scale ** 2 if args.low_res else 1
    if args.image_file is None:
        return math.prod(getattr(skimage_data, args.sample)().shape[:2]) * grow
    sizes = [image_size(path) for path in input_paths(args)]  # an unreadable one is named when its turn comes
    return sum(width * height for width, height in filter(None, sizes)) * grow


def input_paths(args: argparse.Namespace) -> list[Path]:
    return list_images(args.image_file) if args.image_file.is_dir() else [args.image_file]


def torch_network(args: argparse.Namespace, weights: Path, graph: GraphUpscaler | None) -> Network:
    """The weights loaded by PyTorch, on the path asked for or auto's (measured on first use on this
    machine, path_choice.py) between channels_last and ONNX Runtime on `graph`. Without a ready graph, a
    CPU run that may take ONNX Runtime exports one into the cache first (a few seconds, once), so that
    later runs on these weights can skip PyTorch."""
    from inference import Upscaler, choose_device, default_inference_path, measure_cpu_paths, write_graph
    from models import load_model, network_name
    device = choose_device(args.device)
    model, meta = load_model(weights, padding=args.padding, scale=args.scale)
    if graph is None and default_inference_path(device) == "onnxruntime" and \
            args.inference_path in ("auto", "onnxruntime") and args.padding is None and weights.is_file():
        sha256 = file_sha256(weights)
        try:
            graph = write_graph(model, cached_graph_path(sha256, args.scale), meta, sha256)
        except WriteError as err:
            print(f"warning: the ONNX graph cannot be cached ({err}); running on PyTorch", file=sys.stderr)
    graph = graph if device.type == "cpu" else None
    path = args.inference_path
    if path == "auto":
        path = fastest(cached_rates(model.config()) or measure_cpu_paths(model, graph)) if graph \
            else default_inference_path(device, model)
    if path == "onnxruntime" and graph:
        return network_of_graph(graph)
    return Network(Upscaler(model, path, device), meta, network_name(model, meta.get("color", "y")),
                   model.config()["channels"], model.scale if model.takes_lr else None)


def export_graph(args: argparse.Namespace, weights: Path) -> None:
    """--export-onnx: the weights' graph with its record (graphs.py), so that beside the weights it is
    the ready graph test.py runs them on."""
    from inference import export_onnx, graph_record
    from models import load_model
    model, meta = load_model(weights, padding=args.padding, scale=args.scale)
    check_writable(make_folder(args.export_onnx.parent))
    export_onnx(model, args.export_onnx, graph_record(model, meta, None if args.padding else file_sha256(weights)))
    print(f"wrote {args.export_onnx}: input 'input' ({'LR' if model.takes_lr else 'bicubic'} image, "
          f"{model.config()['channels']} channel(s), [0, 1]), output 'output'")


def check_network(network: Network, weights: Path, args: argparse.Namespace) -> str:
    """The colour space the network reads, after checking its scale against --scale."""
    if network.fixed_scale and network.fixed_scale != args.scale:
        raise WeightsError(f"{weights}: FSRCNN weights for x{network.fixed_scale}, not --scale {args.scale}")
    if network.meta.get("scale", args.scale) != args.scale:
        print(f"warning: {weights} was trained for x{network.meta['scale']}, used here at x{args.scale}", file=sys.stderr)
    return weights_color(network.channels, network.meta, weights)


def weights_color(channels: int, meta: dict, weights: Path) -> str:
    """The colour space the network reads: what its file records, checked against its input channels
    (a plain state dict records none: 1 channel is Y, 3 channels could be YCbCr or RGB)."""
    color = meta.get("color", "y" if channels == 1 else None)
    if color in COLORS and (color == "y") == (channels == 1):
        return color
    recorded = "no colour space" if color is None else f"colour {color!r}"
    raise WeightsError(f"{weights}: {channels}-channel weights that record {recorded} (1-channel weights read y, "
                       f"3-channel ones ycbcr or rgb)")


def degradation(args: argparse.Namespace, trained_blur: float) -> str:
    """How LR is made from HR in this run, in words: the line test.py prints before its results."""
    blur = f"Gaussian blur sigma {args.blur_sigma:g}, then " if args.blur_sigma else ""
    source = "" if args.blur_sigma == trained_blur else " (--blur-sigma; the weights were trained with " \
        f"{trained_blur:g})"
    line = f"degradation: {blur}MATLAB bicubic x{args.scale} of the HR image{source}"
    if args.dataset and args.dataset.is_file():
        line += f"; {args.dataset}'s stored LR images, checked to be made so"
    elif args.dataset:
        line += "; the folder's *_LR images are not used" if args.blur_sigma else "; *_LR images used where the folder has them"
    return line


def restore(network: Network, image: np.ndarray, name: str, args: argparse.Namespace) -> tuple[dict[Path, np.ndarray], str]:
    """The images to write for one input, and the line to print: <name>_<network>_xS.png; for an HR input
    (scored against it) or with --compare, <name>_bicubic_xS.png and <name>_<network>_xS_comparison.png too."""
    s, label = args.scale, network.name.upper().replace("_", " ")
    if args.low_res:
        hr, lr, bicubic = None, image, upscale_bicubic(image, s)
    else:
        hr = modcrop(image, s)
        if min(hr.shape[:2]) < 2 * s:
            raise ImageError(f"{name}: {hr.shape[1]}x{hr.shape[0]} is too small to downscale by {s}")
        lr, bicubic = degrade(hr, s, args.blur_sigma)
    sr, sr_y = upscale(network.upscaler, lr, bicubic, args.color, args.tile)
    outputs = {args.output_dir / f"{name}_{network.name}_x{s}.png": sr}
    measurable = hr is not None and min(hr.shape[:2]) - 2 * s >= MIN_MEASURED_SIDE  # one SSIM window once shaved
    if measurable:
        (bicubic_psnr, bicubic_ssim), (sr_psnr, sr_ssim) = psnr_ssim(hr, y_channel(bicubic), s), psnr_ssim(hr, sr_y, s)
        panels = [(f"bicubic  {bicubic_psnr:.2f} dB", bicubic), (f"{label}  {sr_psnr:.2f} dB", sr), ("original", hr)]
        line = (f"{name} x{s}: bicubic PSNR {bicubic_psnr:.2f} dB SSIM {bicubic_ssim:.4f} | {label} PSNR {sr_psnr:.2f} dB "
                f"SSIM {sr_ssim:.4f} -> {args.output_dir}")
    else:
        panels = [("bicubic", bicubic), (label, sr)] + ([("original", hr)] if hr is not None else [])
        note = "" if hr is None else " (too small to measure once shaved)"
        line = f"{name}: upscaled x{s} to {sr.shape[1]}x{sr.shape[0]}{note} -> {args.output_dir}"
    if hr is not None or args.compare:
        from comparison import comparison_sheet  # Pillow's drawing and fonts only when a sheet is made
        outputs[args.output_dir / f"{name}_bicubic_x{s}.png"] = bicubic
        outputs[args.output_dir / f"{name}_{network.name}_x{s}_comparison.png"] = comparison_sheet(panels)
    return outputs, line


def write_outputs(outputs: dict[Path, np.ndarray]) -> None:
    for path, image in outputs.items():
        make_folder(path.parent)
        save_image(path, image, fast_png=True)


def print_table(result: dict, label: str) -> None:
    print(f"{'image':<16} {'bicubic PSNR':>12} {'SSIM':>7} {label + ' PSNR':>12} {'SSIM':>7}")
    for r in result["images"] + [{"image": "mean", **result["mean"]}]:
        print(f"{r['image']:<16} {r['bicubic_psnr']:>12.2f} {r['bicubic_ssim']:>7.4f} {r['psnr']:>12.2f} {r['ssim']:>7.4f}")


def run_dataset(network: Network, args: argparse.Namespace, weights: Path) -> None:
    result = {"network": network.name, "weights": str(weights),
              **evaluate_dataset(network.upscaler, args.dataset, args.scale, args.color, args.blur_sigma)}
    print_table(result, network.name.upper().replace("_", " "))
    if args.json:
        make_folder(args.json.parent)
        write_text(args.json, json.dumps(finite_or_null(result), indent=1, allow_nan=False))


def finite_or_null(value: object) -> object:
    """JSON has no Infinity: the PSNR of identical images (a flat image, say) is infinite; it becomes null."""
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_null(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def check_output_size(source: str | Path, image: np.ndarray, args: argparse.Namespace) -> None:
    """Refuse, before any work, an image whose output is over --max-pixels: a --low-res input grows by
    scale^2, and the network's output and the images written follow the output's size."""
    s = args.scale if args.low_res else 1
    height, width = image.shape[0] * s, image.shape[1] * s
    if height * width > args.max_pixels:
        raise ImageError(f"{source}: its x{s} output, {width}x{height}, is over the limit of {args.max_pixels:,} "
                         f"pixels; raise --max-pixels to accept it")


def read_input(path: Path, args: argparse.Namespace) -> np.ndarray:
    image = load_image(path, args.max_pixels)
    check_output_size(path, image, args)
    return image


AHEAD = 2  # images read, and outputs being written, beside the one the network works on


def run_images(network: Network, args: argparse.Namespace) -> None:
    """The bundled sample, an image, or a folder of images in a small pipeline: the next images are
    decoded and the last outputs encoded in threads while the network runs (decoders, encoders and
    ONNX Runtime release the GIL), with a progress bar for a folder; each line is printed once its
    images are written."""
    import cv2  # noqa: F401  the outputs' PNG encoder (utils.fast_png_bytes): if missing, stop before any work
    if args.image_file is None:
        image = getattr(skimage_data, args.sample)()
        check_output_size(args.sample, image, args)
        outputs, line = restore(network, image, args.sample, args)
        write_outputs(outputs)
        print(line)
        return
    paths = input_paths(args)
    if not paths:
        raise ImageError(f"{args.image_file}: no images found (png, jpg, bmp, tif)")
    check_distinct_names(paths)
    progress, say = paths, print
    if len(paths) > 1:  # tqdm costs 0.02-0.04 s to import: only for a folder's progress bar
        from tqdm import tqdm
        progress, say = tqdm(paths, unit="img", desc="upscale", file=sys.stderr), tqdm.write  # lines above the bar
    with ThreadPoolExecutor(max_workers=AHEAD) as pool:
        reads = deque(pool.submit(read_input, path, args) for path in paths[:AHEAD])
        writes: deque = deque()
        for i, path in enumerate(progress):
            image = reads.popleft().result()
            if i + AHEAD < len(paths):
                reads.append(pool.submit(read_input, paths[i + AHEAD], args))
            outputs, line = restore(network, image, path.stem, args)
            while len(writes) >= AHEAD:  # bounded: a slow disk must not hold every output in memory
                finish(*writes.popleft(), say)
            writes.append((pool.submit(write_outputs, outputs), line))
        while writes:
            finish(*writes.popleft(), say)


def finish(write: Future, line: str, say: Callable[[str], None]) -> None:
    write.result()
    say(line)


def check_distinct_names(paths: list[Path]) -> None:
    """Outputs are named by the input's stem: two inputs of one stem (x.png and x.jpg, a/x.png and
    b/x.png) would write the same files, so such a folder is refused before any work."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise ImageError(f"{seen[path.stem]} and {path} would write the same output files ({path.stem}_*); "
                             f"rename one")
        seen[path.stem] = path


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.json and not args.dataset:
        parser.error("--json needs --dataset")
    if args.blur_sigma is not None and not 0 <= args.blur_sigma < float("inf"):
        parser.error(f"--blur-sigma must be 0 or more, not {args.blur_sigma}")
    if args.tile < 0:
        parser.error(f"--tile must be 0 or more, not {args.tile}")
    if args.max_pixels < 1:
        parser.error(f"--max-pixels must be 1 or more, not {args.max_pixels}")
    try:
        weights = weights_path(args)
        if args.export_onnx:
            export_graph(args, weights)
            return
        network, graph = graph_network(args, weights)
        network = network or torch_network(args, weights, graph)
        args.color, trained_blur = check_network(network, weights, args), float(network.meta.get("blur_sigma", 0.0))
        for folder in [args.json.parent] if args.json else [] if args.dataset else [args.output_dir]:
            check_writable(make_folder(folder))  # written after the work: an unwritable folder stops it first
        args.blur_sigma = trained_blur if args.blur_sigma is None else args.blur_sigma
        if not args.low_res:
            print(degradation(args, trained_blur))
        run_dataset(network, args, weights) if args.dataset else run_images(network, args)
    except (ImageError, WeightsError, ValueError, WriteError) as err:  # ValueError: GraphError, inference.InferenceError too
        raise SystemExit(f"error: {err}") from None
    except ModuleNotFoundError as err:  # --export-onnx and --inference-path onnxruntime need optional packages
        raise SystemExit(f"error: {err.name} is not installed (pip install -r requirements.txt)") from None


if __name__ == "__main__":
    main()
