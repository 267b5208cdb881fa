"""Train SRCNN on a preprocess.py patch file, validating every epoch on whole images.

    python train.py --train-file output/T91_x3.h5 --eval-file ../shared/data/Set5/x3 --scale 3
    tensorboard --logdir runs

Validation PSNR/SSIM follow the SR protocol (Y channel, output rounded to 8 bits, `scale` pixels
shaved, range 255). The run folder holds TensorBoard logs, `last.pth` (everything --resume needs)
and `best.pth` (the weights with the best validation PSNR, loadable by test.py).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tensorboardX import SummaryWriter
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

import losses
from datasets import EvalDataset, PatchDataset, augment_pairs
from models import ARCHS, FSRCNN, MEMORY_FORMATS, SRCNN, WeightsError, build_model, choose_device, load_model
from utils import ImageError, filter_grid, protocol_y, psnr, ssim, to_uint8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-file", type=Path, required=True, help="HDF5 patches from preprocess.py")
    parser.add_argument("--eval-file", type=Path, required=True,
                        help="preprocess.py --eval HDF5, or a folder of HR images / HR-LR pairs (Set5/x3)")
    parser.add_argument("--outputs-dir", type=Path, help="run folder (default: runs/srcnn_x<scale>)")
    parser.add_argument("--scale", type=int, default=3, choices=[2, 3, 4])
    parser.add_argument("--arch", default="9-5-5", choices=list(ARCHS),
                        help="SRCNN f1-f2-f3 filter sizes, or fsrcnn / fsrcnn-s (needs --lr-size patches)")
    parser.add_argument("--padding", default="same", choices=["same", "valid"],
                        help="valid = the paper's (loss on the centre of each patch)")
    parser.add_argument("--paper-init", action="store_true", help="weights ~ N(0, 0.001^2), zero biases")
    parser.add_argument("--init", type=Path, help="start from these weights (e.g. x3 weights for an x4 run); "
                        "ignored with --resume")
    parser.add_argument("--loss", default="mse", choices=["mse", "psnr", "ssim", "ms-ssim", "weighted"])
    parser.add_argument("--loss-weights", type=float, nargs=3, default=[0.4, 0.5, 0.1], metavar=("MSE", "PSNR", "SSIM"),
                        help="weights of --loss weighted")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of conv1 and conv2")
    parser.add_argument("--last-lr-ratio", type=float, default=0.1,
                        help="conv3's learning rate relative to --lr (the paper: 1e-5 vs 1e-4)")
    parser.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                        help="cosine: decay to 0 over --epochs")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--augment", action="store_true", help="random flips and 90-degree rotations")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--max-steps", type=int,
                        help="stop after this many optimiser steps in all (the checkpoint counts a cut epoch as done)")
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--memory-format", choices=sorted(MEMORY_FORMATS), default="channels_last",
                        help="tensor layout of the convolutions: channels_last trains 1.3-1.8x faster on CPUs here")
    parser.add_argument("--resume", action="store_true", help="continue from <outputs-dir>/last.pth")
    parser.add_argument("--log-every", type=int, default=100, help="steps between training-metric logs")
    parser.add_argument("--eval-every", type=int, default=1,
                        help="epochs between validations (and best.pth updates); the last epoch is always validated")
    parser.add_argument("--image-every", type=int, default=5, help="epochs between image and filter logs")
    parser.add_argument("--in-memory", action="store_true",
                        help="read the whole patch file into memory first (fast for T91-sized files, e.g. on a GPU)")
    args = parser.parse_args(argv)
    args.outputs_dir = args.outputs_dir or Path("runs") / f"srcnn_x{args.scale}"
    for name in ("batch_size", "epochs", "log_every", "eval_every", "image_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_optimizer(model: SRCNN | FSRCNN, args: argparse.Namespace) -> torch.optim.Optimizer:
    """The papers' per-layer rates: --lr for all but the last layer (SRCNN's conv3, FSRCNN's
    deconvolution), which learns --last-lr-ratio (0.1) times slower."""
    last = model.deconv if isinstance(model, FSRCNN) else model.conv3
    rest = [p for name, p in model.named_parameters() if not name.startswith(("conv3.", "deconv."))]
    groups = [{"params": rest, "lr": args.lr}, {"params": last.parameters(), "lr": args.lr * args.last_lr_ratio}]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=args.momentum)
    return torch.optim.Adam(groups)


def make_scheduler(optimizer: torch.optim.Optimizer, args: argparse.Namespace):
    if args.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / args.epochs)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


@torch.no_grad()
def validate(model: SRCNN | FSRCNN, dataset: EvalDataset, scale: int, color: str, device: torch.device) -> dict:
    """Mean PSNR/SSIM/MS-SSIM on the SR protocol, and the first image's (bicubic, SR, HR) Y for logging."""
    model.eval()
    scores = {"psnr": [], "ssim": [], "ms_ssim": [], "bicubic_psnr": []}
    first = None
    as_image = lambda t: (t[0] if t.dim() == 4 else t).permute(1, 2, 0).cpu().numpy().astype(np.float64) * 255
    for (name, lr, bicubic, hr), gray in zip(dataset, dataset.gray):
        x = lr if model.takes_lr else bicubic
        sr = model.super_resolve(x.unsqueeze(0).to(device)).clamp(0, 1)
        sr_y, bicubic_y = protocol_y(as_image(sr), color, gray), protocol_y(as_image(bicubic), color, gray)
        hr_y = np.round(as_image(hr)[..., 0])  # exact 8-bit values again after the float32 round trip
        scores["psnr"].append(psnr(hr_y, sr_y, scale))
        scores["ssim"].append(ssim(hr_y, sr_y, scale))
        scores["bicubic_psnr"].append(psnr(hr_y, bicubic_y, scale))
        crop = lambda y: torch.from_numpy(y[scale:-scale, scale:-scale] / 255).float()[None, None]
        if min(hr_y.shape) - 2 * scale >= 33:
            scores["ms_ssim"].append(float(losses.ms_ssim(crop(sr_y), crop(hr_y))))
        first = first or (bicubic_y, sr_y, hr_y)
    model.train()
    return {**{k: float(np.mean(v)) for k, v in scores.items() if v}, "strip": np.concatenate(first, axis=1)}


def save_atomic(obj: dict, path: Path, keep_previous: bool = False) -> None:
    """torch.save through a temporary file, so a crash or a full disk never leaves a half-written file;
    with `keep_previous`, the file it replaces stays as previous-<name> until the new one is complete."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        if keep_previous and path.exists():
            path.replace(path.with_name(f"previous-{path.name}"))
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SystemExit(f"error: cannot write {path}: {err.strerror or err}") from None


def load_checkpoint(path: Path) -> dict:
    """last.pth, or previous-last.pth with a warning when last.pth is missing or corrupt."""
    previous = path.with_name(f"previous-{path.name}")
    for candidate in (path, previous):
        try:
            return torch.load(candidate, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
        except FileNotFoundError:
            continue
        except Exception as err:  # a truncated or garbled file
            print(f"warning: {candidate} is unreadable ({str(err).splitlines()[0]}); trying {previous.name}", file=sys.stderr)
    raise SystemExit(f"error: --resume: no readable {path} or {previous}")


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, writes a checkpoint and exits."""

    def __init__(self) -> None:
        self.signal = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.request)

    def request(self, signum: int, frame: object) -> None:
        self.signal = signum


def ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1) this joins the process group:
    NCCL with one GPU per process, gloo on the CPU. A plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = choose_device(device_name)
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank, world, device = setup_distributed(args.device)
    if args.batch_size % world:
        raise SystemExit(f"error: --batch-size {args.batch_size} (the global batch) is not divisible by {world} processes")
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels

    try:
        train_set = PatchDataset(args.train_file, in_memory=args.in_memory)
        color = str(train_set.attrs.get("color", "y"))
        eval_set = EvalDataset(args.eval_file, args.scale, color=color)
    except (ValueError, ImageError) as err:
        raise SystemExit(f"error: {err}") from None
    if train_set.attrs.get("scale", args.scale) != args.scale:
        raise SystemExit(f"error: {args.train_file} was made for scale {train_set.attrs['scale']}, not --scale {args.scale}")
    is_fsrcnn = args.arch.startswith("fsrcnn")
    if bool(train_set.attrs.get("lr_size", False)) != is_fsrcnn:
        raise SystemExit(f"error: {args.train_file}: --arch {args.arch} needs patches made "
                         f"{'with' if is_fsrcnn else 'without'} preprocess.py --lr-size")
    if args.loss == "ms-ssim":
        losses.ms_ssim_window(int(train_set.attrs.get("patch_size", 33)))  # fails early if patches are too small

    model = build_model(args.arch, channels=1 if color == "y" else 3, padding=args.padding,
                        paper_init=args.paper_init, scale=args.scale)
    if args.init and not args.resume:  # a resumed run takes its weights from the checkpoint
        try:
            model.load_state_dict(load_model(args.init)[0].state_dict())
        except (WeightsError, RuntimeError) as err:
            raise SystemExit(f"error: --init {args.init}: {str(err).splitlines()[0]}") from None
    model = model.to(device, memory_format=MEMORY_FORMATS[args.memory_format])
    # DDP averages gradients over ranks: with the global batch split across them, a step equals the one-process step.
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    optimizer = make_optimizer(model, args)
    scheduler = make_scheduler(optimizer, args)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    criterion = losses.get_loss(args.loss, tuple(args.loss_weights))
    meta = {**model.config(), "arch": args.arch, "scale": args.scale, "color": color, "train_file": str(args.train_file)}

    try:
        args.outputs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SystemExit(f"error: cannot create {args.outputs_dir}: {err.strerror}") from None
    last_path, best_path = args.outputs_dir / "last.pth", args.outputs_dir / "best.pth"
    start_epoch, batches_done, step, best_psnr = 0, 0, 0, -math.inf
    if args.resume:
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, batches_done = state["epoch"], state.get("batches_done", 0)
        step, best_psnr = state["step"], state["best_psnr"]
        torch.set_rng_state(state["rng"]["cpu"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        if rank == 0:
            print(f"resumed from {last_path}: epoch {start_epoch} (+{batches_done} batches), step {step}, "
                  f"best PSNR {best_psnr:.2f} dB")

    writer = SummaryWriter(str(args.outputs_dir)) if rank == 0 else None  # rank 0 alone logs, validates and saves
    if writer:
        writer.add_text("args", json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1), start_epoch)

    def checkpoint(epoch: int, batches: int, scores: dict | None) -> None:
        """best.pth when validation improved, and last.pth: everything a resume needs, mid-epoch included."""
        epochs_trained = round(epoch + batches / (len(train_set) // args.batch_size), 3)
        weights = {"model": model.state_dict(), "meta": {**meta, "epoch": epochs_trained, "step": step,
                                                         "eval_file": str(args.eval_file)}}
        if scores is not None:
            weights["meta"].update(val_psnr=scores["psnr"], val_ssim=scores["ssim"])
            if scores["psnr"] >= best_psnr:
                save_atomic(weights, best_path)
        rng = {"cpu": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state()} if device.type == "cuda" else {})}
        save_atomic({**weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "epoch": epoch, "batches_done": batches, "step": step,
                     "best_psnr": best_psnr, "rng": rng, "args": {k: str(v) for k, v in vars(args).items()}},
                    last_path, keep_previous=True)

    stop = StopRequest()
    augment_generator = torch.Generator()
    border, loss_average = model.border, None
    model.train()
    next_images = start_epoch  # the first validation logs images, then one every --image-every epochs
    per_epoch, per_rank = len(train_set) // args.batch_size, args.batch_size // world
    for epoch in range(start_epoch, args.epochs):
        # The shuffle comes from seed + epoch and each batch's augmentation from seed and step, so a run
        # resumed mid-epoch replays exactly the batches an uninterrupted run would have seen. Each rank
        # takes its slice of every global batch (a DistributedSampler that also resumes mid-epoch).
        started = time.perf_counter()
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.seed + epoch))
        batches = order[: per_epoch * args.batch_size].view(per_epoch, args.batch_size)
        mine = batches[batches_done:, rank * per_rank:(rank + 1) * per_rank].flatten().tolist()
        loader = DataLoader(train_set, batch_size=per_rank, sampler=mine, drop_last=True, num_workers=args.num_workers,
                            pin_memory=device.type == "cuda", worker_init_fn=ignore_sigint)
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False,
                        initial=batches_done, total=per_epoch, disable=rank > 0)
        for lr, hr in progress:
            if args.augment:
                lr, hr = augment_pairs(lr, hr, augment_generator.manual_seed(args.seed * 1_000_003 + step),
                                       total=args.batch_size, start=rank * per_rank)
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
            if border:
                hr = hr[..., border:-border, border:-border]
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                sr = net(lr)
            loss = criterion(sr.float(), hr)
            value = loss.item()
            if not math.isfinite(value):
                raise SystemExit(f"error: loss became {value} at step {step + 1}; training stopped, the last good "
                                 f"checkpoint is {last_path} (lower --lr?)")
            if loss_average is not None and loss_average > 0 and step > 100 and value > 50 * loss_average:
                raise SystemExit(f"error: loss jumped to {value:.4g} at step {step + 1} (running mean {loss_average:.4g}):"
                                 f" the learning rate {args.lr:g} diverges; last good checkpoint: {last_path}")
            loss_average = value if loss_average is None else 0.99 * loss_average + 0.01 * value
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            batches_done += 1
            if world > 1:  # every rank stops at the same step, or the others would wait forever
                flag = torch.tensor([stop.signal], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop.signal = int(flag.item())
            if writer and step % args.log_every == 0:
                with torch.no_grad():
                    sr = sr.float().clamp(0, 1)
                    writer.add_scalar("train/loss", value, step)
                    writer.add_scalar("train/psnr", losses.psnr(sr, hr).item(), step)
                    writer.add_scalar("train/ssim", losses.ssim(sr, hr).item(), step)
                    if min(hr.shape[-2:]) >= 33:
                        writer.add_scalar("train/ms_ssim", losses.ms_ssim(sr, hr).item(), step)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
                progress.set_postfix(loss=f"{value:.5f}")
            if stop.signal or (args.max_steps and step >= args.max_steps):
                break
        progress.close()
        if stop.signal and batches_done < per_epoch:
            if writer:
                checkpoint(epoch, batches_done, None)
                writer.close()
                print(f"interrupted by {signal.Signals(stop.signal).name} at step {step}: checkpoint {last_path}; "
                      f"continue with --resume", file=sys.stderr)
            finish_distributed(world)
            raise SystemExit(128 + stop.signal)
        finished = batches_done >= per_epoch
        if finished:
            scheduler.step()
            batches_done = 0
        stopping = bool(stop.signal) or bool(args.max_steps and step >= args.max_steps)
        evaluate = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs or stopping
        if writer and evaluate:  # rank 0 alone validates and saves; the other ranks wait at the barrier
            scores = validate(model, eval_set, args.scale, color, device)
            for key in ("psnr", "ssim", "ms_ssim", "bicubic_psnr"):
                if key in scores:
                    writer.add_scalar(f"val/{key}", scores[key], step)
            if epoch >= next_images:
                next_images = epoch + args.image_every
                strip = to_uint8(scores["strip"])
                writer.add_image("val/bicubic_srcnn_hr", strip[None], step, dataformats="CHW")
                first = model.feature[0] if isinstance(model, FSRCNN) else model.conv1
                weights = first.weight.detach().cpu().numpy()[:, 0]  # the first input channel (Y, Y or R)
                writer.add_image("filters/first_layer", filter_grid(weights)[None], step, dataformats="CHW")
            writer.flush()
            improved = scores["psnr"] > best_psnr
            best_psnr = max(best_psnr, scores["psnr"])
            checkpoint(epoch + finished, batches_done, scores)
            tqdm.write(f"epoch {epoch + 1}: step {step}, val PSNR {scores['psnr']:.2f} dB (bicubic "
                       f"{scores['bicubic_psnr']:.2f}), SSIM {scores['ssim']:.4f}, {time.perf_counter() - started:.1f} s"
                       f"{' *' if improved else ''}", file=sys.stdout)
        elif writer:
            checkpoint(epoch + finished, batches_done, None)
            tqdm.write(f"epoch {epoch + 1}: step {step}, {time.perf_counter() - started:.1f} s", file=sys.stdout)
        if world > 1:
            dist.barrier()
        if stopping:
            break
    if writer:
        writer.close()
        print(f"best val PSNR {best_psnr:.2f} dB; weights in {best_path}")
    finish_distributed(world)
    if stop.signal:
        raise SystemExit(128 + stop.signal)


def finish_distributed(world: int) -> None:
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
