"""Super-resolve images with SRCNN and compare with bicubic, on the SR protocol.

    python test.py                                         # scikit-image's coffee, x3, into results/
    python test.py --sample astronaut --scale 4            # another bundled image
    python test.py --image-file photo.png --scale 2        # an HR image: degrade, restore, measure
    python test.py --image-file small.png --lr --scale 3   # a real low-resolution image: just upscale
    python test.py --dataset ../shared/data/Set5/x3 --scale 3 --json set5_x3.json
    python test.py --scale 3 --export-onnx srcnn_x3.onnx  # the shipped x3 network as ONNX

A Y network (the default) restores the Y channel and Cb/Cr stay bicubic; a 3-channel network
(preprocess.py --channels 3) writes colour directly. SRCNN reads the bicubic-upscaled image, FSRCNN
the LR image. PSNR/SSIM are measured on Y (MATLAB rgb2ycbcr, 8-bit), with `scale` pixels shaved,
against the original HR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from skimage import data as skimage_data
from tqdm import tqdm

from models import (INFERENCE_PATHS, Upscaler, WeightsError, choose_device, download_weights, export_onnx,
                    load_model)
from utils import (MAX_PIXELS, ImageError, benchmark_pairs, degrade, from_color, list_images, load_image, modcrop,
                   protocol_y, psnr, rgb2ycbcr, save_image, ssim, to_color, to_uint8, upscale_bicubic, y_channel,
                   ycbcr2rgb)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SAMPLES = ["coffee", "astronaut", "chelsea", "rocket", "camera"]  # bundled with scikit-image, no download


@torch.no_grad()
def super_resolve(upscaler: Upscaler, lr: np.ndarray, bicubic: np.ndarray, color: str,
                  tile: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Run the network on a uint8 image; returns (uint8 output image, the Y it is measured on).

    SRCNN reads the bicubic image, FSRCNN the LR one. A Y network restores Y and keeps Cb/Cr from
    bicubic; its own 8-bit Y is what gets measured, as in train.py's validation (re-deriving Y from
    the RGB file can move a pixel by one level). A YCbCr or RGB network writes all three channels.
    `tile` > 0 bounds memory by running tile x tile pieces (the same result).
    """
    source = lr if upscaler.model.takes_lr else bicubic
    x = torch.from_numpy((to_color(source, color) / 255).astype(np.float32)).permute(2, 0, 1)[None]
    out = upscaler(x, tile)
    out = out.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy().astype(np.float64) * 255
    gray = bicubic.ndim == 2
    sr_y = protocol_y(out, color, gray)
    if color != "y":
        return from_color(out, color, gray), sr_y
    if gray:
        return to_uint8(sr_y), sr_y
    ycbcr = rgb2ycbcr(bicubic)
    ycbcr[..., 0] = sr_y
    return to_uint8(ycbcr2rgb(ycbcr)), sr_y


def scores(hr: np.ndarray, y: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of a Y image against the HR image on the SR protocol."""
    hr_y = y_channel(hr)
    return psnr(hr_y, y, scale), ssim(hr_y, y, scale)


def side_by_side(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    """Images of equal height next to each other on a white background."""
    images = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in images]
    spacer = np.full((images[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([part for im in images for part in (im, spacer)][:-1], axis=1)


def process_image(upscaler: Upscaler, image: np.ndarray, name: str, args: argparse.Namespace) -> None:
    """Write <name>_bicubic_xS.png, <name>_srcnn_xS.png and <name>_comparison_xS.png; print scores for HR input."""
    s = args.scale
    if args.lr:
        hr, lr, bicubic = None, image, upscale_bicubic(image, s)
    else:
        hr = modcrop(image, s)
        if min(hr.shape[:2]) < 2 * s:
            raise ImageError(f"{name}: {hr.shape[1]}x{hr.shape[0]} is too small to downscale by {s}")
        lr, bicubic = degrade(hr, s, args.blur_sigma)
    sr, sr_y = super_resolve(upscaler, lr, bicubic, args.color, args.tile)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    save_image(args.output_dir / f"{name}_bicubic_x{s}.png", bicubic)
    save_image(args.output_dir / f"{name}_srcnn_x{s}.png", sr)
    save_image(args.output_dir / f"{name}_comparison_x{s}.png", side_by_side(bicubic, sr, *([hr] if hr is not None else [])))
    if hr is None or min(hr.shape[:2]) - 2 * s < 11:  # nothing to compare, or under one 11x11 SSIM window once shaved
        note = "" if hr is None else " (too small to measure once shaved)"
        print(f"{name}: upscaled x{s} to {sr.shape[1]}x{sr.shape[0]}{note} -> {args.output_dir}")
    else:
        (bp, bs), (p, ss) = scores(hr, y_channel(bicubic), s), scores(hr, sr_y, s)
        print(f"{name} x{s}: bicubic PSNR {bp:.2f} dB SSIM {bs:.4f} | SRCNN PSNR {p:.2f} dB SSIM {ss:.4f} -> {args.output_dir}")


def evaluate_dataset(upscaler: Upscaler, folder: Path, scale: int, color: str = "y") -> dict:
    """Per-image and mean PSNR/SSIM of bicubic and SRCNN on a benchmark folder."""
    rows = []
    for name, hr, lr in tqdm(list(benchmark_pairs(folder, scale)), desc=f"{folder} x{scale}", unit="img", file=sys.stderr):
        bicubic = upscale_bicubic(lr, scale)
        (bp, bs), (p, ss) = scores(hr, y_channel(bicubic), scale), scores(hr, super_resolve(upscaler, lr, bicubic, color)[1], scale)
        rows.append({"image": name, "bicubic_psnr": bp, "bicubic_ssim": bs, "srcnn_psnr": p, "srcnn_ssim": ss})
    mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "image"}
    return {"dataset": str(folder), "scale": scale, "images": rows, "mean": mean}


def print_table(result: dict) -> None:
    print(f"{'image':<16} {'bicubic PSNR':>12} {'SSIM':>7} {'SRCNN PSNR':>11} {'SSIM':>7}")
    for r in result["images"] + [{"image": "mean", **result["mean"]}]:
        print(f"{r['image']:<16} {r['bicubic_psnr']:>12.2f} {r['bicubic_ssim']:>7.4f} {r['srcnn_psnr']:>11.2f} {r['srcnn_ssim']:>7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image-file", type=Path, help="an image or a folder of images (default: scikit-image's coffee)")
    source.add_argument("--dataset", type=Path, help="benchmark folder: *_HR/*_LR pairs (Set5/x3) or HR images")
    source.add_argument("--sample", choices=SAMPLES, default="coffee",
                        help="a scikit-image bundled image, used when no other input is given")
    parser.add_argument("--weights-file", help="a file or an http(s) URL (default: weights/srcnn_x<scale>.pth)")
    parser.add_argument("--sha256", help="expected checksum of a downloaded --weights-file (default: the model card's)")
    parser.add_argument("--allow-http", action="store_true", help="allow a plain-http --weights-file URL")
    parser.add_argument("--padding", choices=["same", "valid"], help="override the padding stored with the weights")
    parser.add_argument("--scale", type=int, default=3, choices=[2, 3, 4])
    parser.add_argument("--lr", action="store_true", help="the input is already low-resolution: upscale only")
    parser.add_argument("--blur-sigma", type=float, default=0.0, help="Gaussian blur when degrading an HR input")
    parser.add_argument("--output-dir", type=Path, default=Path("results"))
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="refuse larger images (decompression bombs)")
    parser.add_argument("--inference-path", default="auto", choices=["auto", *INFERENCE_PATHS],
                        help="how the network runs (auto: the fastest one that matches eager fp32 within 1/255 on "
                             "this device: onnxruntime on CPUs, channels_last without it, fp16 autocast on CUDA)")
    parser.add_argument("--tile", type=int, default=0,
                        help="run the network on TILE x TILE input pieces (same output, bounded memory); 0: whole image")
    parser.add_argument("--json", type=Path, help="with --dataset: write the table as JSON")
    parser.add_argument("--export-onnx", type=Path, metavar="FILE",
                        help="write the weights' network as ONNX (any height and width) and exit")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    if args.json and not args.dataset:
        parser.error("--json needs --dataset")

    device = choose_device(args.device)
    weights = args.weights_file or WEIGHTS_DIR / f"srcnn_x{args.scale}.pth"
    try:
        if str(weights).startswith(("http://", "https://")):
            weights = download_weights(str(weights), args.sha256, allow_http=args.allow_http)
        model, meta = load_model(weights, padding=args.padding, scale=args.scale)
        if model.takes_lr and model.scale != args.scale:  # FSRCNN's deconvolution fixes its scale
            raise WeightsError(f"{weights}: FSRCNN weights for x{model.scale}, not --scale {args.scale}")
        if meta.get("scale", args.scale) != args.scale:
            print(f"warning: {weights} was trained for x{meta['scale']}, used here at x{args.scale}", file=sys.stderr)
        args.color = meta.get("color", "y")
        if args.export_onnx:
            export_onnx(model, args.export_onnx)
            print(f"wrote {args.export_onnx}: input 'input' ({'LR' if model.takes_lr else 'bicubic'} image, "
                  f"{model.config()['channels']} channel(s), [0, 1]), output 'output'")
            return
        upscaler = Upscaler(model, args.inference_path, device)
        if args.dataset:
            result = evaluate_dataset(upscaler, args.dataset, args.scale, args.color)
            print_table(result)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({**result, "weights": str(weights)}, indent=1))
        elif args.image_file is None:
            process_image(upscaler, getattr(skimage_data, args.sample)(), args.sample, args)
        else:
            paths = list_images(args.image_file) if args.image_file.is_dir() else [args.image_file]
            if not paths:
                raise ImageError(f"{args.image_file}: no images found (png, jpg, bmp, tif)")
            for path in paths:
                process_image(upscaler, load_image(path, args.max_pixels), path.stem, args)
    except (ImageError, WeightsError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    except ModuleNotFoundError as err:  # --export-onnx and --inference-path onnxruntime need optional packages
        raise SystemExit(f"error: {err.name} is not installed (pip install -r requirements.txt)") from None


if __name__ == "__main__":
    main()
