"""Turn a training checkpoint into shipped weights: the model state plus metadata with its protocol
PSNR/SSIM on the benchmark sets, its ONNX graph beside it (weights/<name>.onnx, what test.py runs without
PyTorch), its entry in weights/manifest.json (with both files' sha256), and the model card's table
regenerated from the manifest. Given a shipped file, it keeps that file's training
record and scores it again (after a change to the protocol's code).

    python -m weights.publish runs/srcnn_x3/best.pth --scale 3 --data data
    python -m weights.publish weights/fsrcnn_x3.pth --scale 3 --data data   # rescore a shipped file
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import cli
from evaluate import evaluate_dataset
from files import atomic_write
from hub import WEIGHTS_DIR, file_sha256, read_manifest, write_card, write_manifest
from inference import Upscaler, write_graph_beside
from models import WeightsError, load_model, network_name

PROTOCOL = "Y (MATLAB rgb2ycbcr), shave = scale, range 255"
T91_PAPER_PRESET = "T91 (91 images), paper preset: 33x33 patches, stride 14"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("checkpoint", type=Path, help="best.pth or last.pth of a train.py run, or a file in "
                        "weights/ to score again (it keeps its name)")
    parser.add_argument("--scale", type=int, required=True, choices=[2, 3, 4], help="upscaling factor")
    cli.add_data(parser)
    parser.add_argument("--training-data", help="what the weights were trained on, stored in meta and the manifest "
                        f"(default: the checkpoint's record or patch file, else {T91_PAPER_PRESET!r})")
    parser.add_argument("--history", help="how the weights were trained when it took several runs "
                        "(default: the checkpoint's record, if any)")
    parser.add_argument("--name", help="the file name in weights/ (default: a file already in weights/ keeps "
                        "its name, else <network>[_blur]_x<scale>.pth)")
    return parser


def output_name(checkpoint: Path, network: str, blur_sigma: float, scale: int, name: str | None = None) -> str:
    """The file in weights/ that publishing `checkpoint` writes: --name, else a file already in weights/
    keeps its own name (rescoring srcnn_real_x3.pth must not overwrite srcnn_x3.pth), else
    <network>[_blur]_x<scale>.pth; a blurred file never overwrites the T91 one, trained without blur."""
    if name:
        return name
    resolved = checkpoint.resolve()  # a link in runs/ to a shipped file rescores that file
    if resolved.parent == WEIGHTS_DIR.resolve():
        return resolved.name
    return f"{network}{'_blur' if blur_sigma else ''}_x{scale}.pth"


@cli.one_line_errors(WeightsError, ValueError)
def main() -> None:
    args = build_parser().parse_args()

    model, meta = load_model(args.checkpoint, scale=args.scale)
    color, blur_sigma = meta.get("color", "y"), float(meta.get("blur_sigma", 0.0))
    scores = {}
    for name in ("Set5", "Set14"):  # under the degradation the network was trained for
        mean = evaluate_dataset(Upscaler(model, "eager"), args.data / name / f"x{args.scale}", args.scale, color,
                                blur_sigma)["mean"]
        scores[name] = {"psnr": round(mean["psnr"], 4), "ssim": round(mean["ssim"], 4)}
    out = WEIGHTS_DIR / output_name(args.checkpoint, network_name(model, color), blur_sigma, args.scale, args.name)
    history = args.history or meta.get("history")
    info = {**model.config(), "arch": meta.get("arch", "9-5-5"), "color": color, "scale": args.scale,
            "training_data": args.training_data or meta.get("training_data", meta.get("train_file", T91_PAPER_PRESET)),
            "epochs": meta.get("epoch", meta.get("epochs")), "steps": meta.get("step", meta.get("steps")),
            "protocol": PROTOCOL, "benchmarks": scores, **({"history": history} if history else {}),
            **({"blur_sigma": meta["blur_sigma"]} if meta.get("blur_sigma") else {}),  # what test.py degrades with
            **({"degradation": meta["degradation"]} if meta.get("degradation", "matlab") != "matlab" else {})}
    with atomic_write(out) as tmp:
        torch.save({"model": model.state_dict(), "meta": info}, tmp)
    manifest = read_manifest()
    keys = ("model", "arch", "scale", "color", "blur_sigma", "degradation", "padding", "channels", "benchmarks",
            "training_data", "history", "epochs", "steps")
    manifest[out.name] = {**{k: info[k] for k in keys if info.get(k) is not None}, "sha256": file_sha256(out),
                          "graph_sha256": file_sha256(write_graph_beside(out))}  # test.py runs it without PyTorch
    write_manifest(manifest)
    write_card(WEIGHTS_DIR / "README.md", manifest)
    print(f"wrote {out}: Set5 {scores['Set5']['psnr']:.2f} dB, Set14 {scores['Set14']['psnr']:.2f} dB; "
          f"its ONNX graph, weights/manifest.json and the model card updated")


if __name__ == "__main__":
    main()
