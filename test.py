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
from pathlib import Path

import numpy as np
from skimage import data as skimage_data

import cli
from comparison import comparison_sheet
from datasets import MIN_MEASURED_SIDE
from evaluate import evaluate_dataset, psnr_ssim, upscale
from hub import WEIGHTS_DIR, download_weights
from files import WriteError, check_writable, make_folder, write_text
from inference import INFERENCE_PATHS, InferenceError, Upscaler, choose_device, export_onnx
from models import FSRCNN, SRCNN, WeightsError, load_model, network_name
from utils import COLORS, MAX_PIXELS, ImageError, degrade, list_images, load_image, modcrop, save_image, upscale_bicubic, y_channel

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
    parser.add_argument("--inference-path", default="auto", choices=["auto", *INFERENCE_PATHS],
                        help="how the network runs (auto: the fastest one that matches eager fp32 within 1/255 on "
                             "this device: onnxruntime on CPUs, channels_last without it, fp16 autocast on CUDA)")
    parser.add_argument("--tile", type=int, default=0,
                        help="run the network on TILE x TILE input pieces (same output, bounded memory); 0: the "
                             "whole image, in tiles once its activations would pass a fixed budget "
                             "(inference.ACTIVATION_BUDGET)")
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


def load_weights(args: argparse.Namespace) -> tuple[SRCNN | FSRCNN, dict, Path]:
    """The network, its metadata and where its file is, downloading a URL first."""
    weights = args.weights_file
    if weights is None:
        weights, why = default_weights(args)
        print(f"weights: {weights.relative_to(WEIGHTS_DIR.parent)}, {why}")
    if str(weights).startswith(("http://", "https://")):
        weights = download_weights(str(weights), args.sha256, allow_http=args.allow_http)
    model, meta = load_model(weights, padding=args.padding, scale=args.scale)
    if model.takes_lr and model.scale != args.scale:  # FSRCNN's deconvolution fixes its scale
        raise WeightsError(f"{weights}: FSRCNN weights for x{model.scale}, not --scale {args.scale}")
    if meta.get("scale", args.scale) != args.scale:
        print(f"warning: {weights} was trained for x{meta['scale']}, used here at x{args.scale}", file=sys.stderr)
    return model, meta, Path(weights)


def weights_color(model: SRCNN | FSRCNN, meta: dict, weights: Path) -> str:
    """The colour space the network reads: what its file records, checked against its input channels
    (a plain state dict records none: 1 channel is Y, 3 channels could be YCbCr or RGB)."""
    channels = model.config()["channels"]
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


def process_image(upscaler: Upscaler, image: np.ndarray, name: str, args: argparse.Namespace) -> None:
    """Write <name>_bicubic_xS.png, <name>_<network>_xS.png and <name>_<network>_xS_comparison.png;
    print scores for an HR input."""
    s, network = args.scale, network_name(upscaler.model, args.color)
    if args.low_res:
        hr, lr, bicubic = None, image, upscale_bicubic(image, s)
    else:
        hr = modcrop(image, s)
        if min(hr.shape[:2]) < 2 * s:
            raise ImageError(f"{name}: {hr.shape[1]}x{hr.shape[0]} is too small to downscale by {s}")
        lr, bicubic = degrade(hr, s, args.blur_sigma)
    sr, sr_y = upscale(upscaler, lr, bicubic, args.color, args.tile)
    label = network.upper().replace("_", " ")
    measurable = hr is not None and min(hr.shape[:2]) - 2 * s >= MIN_MEASURED_SIDE  # one SSIM window once shaved
    if measurable:
        (bicubic_psnr, bicubic_ssim), (sr_psnr, sr_ssim) = psnr_ssim(hr, y_channel(bicubic), s), psnr_ssim(hr, sr_y, s)
        panels = [(f"bicubic  {bicubic_psnr:.2f} dB", bicubic), (f"{label}  {sr_psnr:.2f} dB", sr), ("original", hr)]
    else:
        panels = [("bicubic", bicubic), (label, sr)] + ([("original", hr)] if hr is not None else [])
    make_folder(args.output_dir)
    save_image(args.output_dir / f"{name}_bicubic_x{s}.png", bicubic)
    save_image(args.output_dir / f"{name}_{network}_x{s}.png", sr)
    save_image(args.output_dir / f"{name}_{network}_x{s}_comparison.png", comparison_sheet(panels))
    if measurable:
        print(f"{name} x{s}: bicubic PSNR {bicubic_psnr:.2f} dB SSIM {bicubic_ssim:.4f} | {label} PSNR {sr_psnr:.2f} dB "
              f"SSIM {sr_ssim:.4f} -> {args.output_dir}")
    else:
        note = "" if hr is None else " (too small to measure once shaved)"
        print(f"{name}: upscaled x{s} to {sr.shape[1]}x{sr.shape[0]}{note} -> {args.output_dir}")


def print_table(result: dict, label: str) -> None:
    print(f"{'image':<16} {'bicubic PSNR':>12} {'SSIM':>7} {label + ' PSNR':>12} {'SSIM':>7}")
    for r in result["images"] + [{"image": "mean", **result["mean"]}]:
        print(f"{r['image']:<16} {r['bicubic_psnr']:>12.2f} {r['bicubic_ssim']:>7.4f} {r['psnr']:>12.2f} {r['ssim']:>7.4f}")


def run_dataset(upscaler: Upscaler, args: argparse.Namespace, weights: Path) -> None:
    network = network_name(upscaler.model, args.color)
    result = {"network": network, "weights": str(weights),
              **evaluate_dataset(upscaler, args.dataset, args.scale, args.color, args.blur_sigma)}
    print_table(result, network.upper().replace("_", " "))
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


def run_images(upscaler: Upscaler, args: argparse.Namespace) -> None:
    if args.image_file is None:
        image = getattr(skimage_data, args.sample)()
        check_output_size(args.sample, image, args)
        process_image(upscaler, image, args.sample, args)
        return
    paths = list_images(args.image_file) if args.image_file.is_dir() else [args.image_file]
    if not paths:
        raise ImageError(f"{args.image_file}: no images found (png, jpg, bmp, tif)")
    for path in paths:
        image = load_image(path, args.max_pixels)
        check_output_size(path, image, args)
        process_image(upscaler, image, path.stem, args)


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
        device = choose_device(args.device)
        model, meta, weights = load_weights(args)
        args.color, trained_blur = weights_color(model, meta, weights), float(meta.get("blur_sigma", 0.0))
        args.blur_sigma = trained_blur if args.blur_sigma is None else args.blur_sigma
        folders = [target.parent for target in (args.json, args.export_onnx) if target] or \
            ([] if args.dataset else [args.output_dir])
        for folder in folders:  # written after the work: an unwritable folder stops it first
            check_writable(make_folder(folder))
        if args.export_onnx:
            export_onnx(model, args.export_onnx)
            print(f"wrote {args.export_onnx}: input 'input' ({'LR' if model.takes_lr else 'bicubic'} image, "
                  f"{model.config()['channels']} channel(s), [0, 1]), output 'output'")
            return
        upscaler = Upscaler(model, args.inference_path, device)
        if not args.low_res:
            print(degradation(args, trained_blur))
        run_dataset(upscaler, args, weights) if args.dataset else run_images(upscaler, args)
    except (ImageError, WeightsError, ValueError, WriteError, InferenceError) as err:
        raise SystemExit(f"error: {err}") from None
    except ModuleNotFoundError as err:  # --export-onnx and --inference-path onnxruntime need optional packages
        raise SystemExit(f"error: {err.name} is not installed (pip install -r requirements.txt)") from None


if __name__ == "__main__":
    main()
