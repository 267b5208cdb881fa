"""Train SRCNN (or FSRCNN) on a preprocess.py patch file, validating on whole images.

    python train.py --train-file output/T91_x3.h5 --eval-file data/Set5/x3 --scale 3
    tensorboard --logdir runs

Validation is evaluate.py's, the same code test.py scores with (Y channel, output rounded to 8 bits,
`scale` pixels shaved, range 255). The run folder holds TensorBoard logs, `last.pth` (everything
--resume needs) and `best.pth` (the weights with the best validation PSNR, loadable by test.py).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tensorboardX import SummaryWriter
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

import cli
import losses
from checkpoints import CHECKPOINT_FILES, load_checkpoint, same_file, save_atomic
from datasets import PatchDataset, augment_pairs, eval_pairs, made_with
from files import LockedError, WriteError, check_writable, hold_lock, make_folder
from evaluate import evaluate_pairs, upscale
from inference import MEMORY_FORMATS, Upscaler, choose_device, native_bf16
from models import ARCHS, FSRCNN, SRCNN, WeightsError, build_model, load_model
from utils import ImageError, filter_grid, first_line, to_uint8, upscale_bicubic, y_channel


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--train-file", type=Path, required=True, help="HDF5 patches from preprocess.py")
    parser.add_argument("--eval-file", type=Path, required=True,
                        help="preprocess.py --eval HDF5, or a folder of HR images / HR-LR pairs (Set5/x3)")
    cli.add_output_dir(parser, None, "run folder (default: runs/<srcnn|fsrcnn>_x<scale>)")
    cli.add_scale(parser)
    parser.add_argument("--arch", default="9-5-5", choices=list(ARCHS),
                        help="SRCNN f1-f2-f3 filter sizes, or fsrcnn / fsrcnn-s (needs --lr-size patches)")
    parser.add_argument("--padding", default="same", choices=["same", "valid"],
                        help="valid = the paper's (loss on the centre of each patch)")
    parser.add_argument("--paper-init", action="store_true", help="weights ~ N(0, 0.001^2), zero biases")
    parser.add_argument("--init", type=Path, help="start from these weights (e.g. x3 weights for an x4 run); "
                        "ignored with --resume")
    parser.add_argument("--loss", default="mse", choices=["mse", "psnr", "ssim", "ms-ssim", "weighted"],
                        help="training loss")
    parser.add_argument("--loss-weights", type=float, nargs=3, default=[0.4, 0.5, 0.1], metavar=("MSE", "PSNR", "SSIM"),
                        help="weights of --loss weighted")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="optimiser")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of every layer but the last")
    parser.add_argument("--last-lr-ratio", type=float, default=0.1,
                        help="the last layer's learning rate relative to --lr (the paper: 1e-5 vs 1e-4)")
    parser.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                        help="cosine: decay to 0 over --epochs")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--augment", action="store_true", help="random flips and 90-degree rotations")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per optimiser step, over all processes")
    parser.add_argument("--epochs", type=int, default=400, help="length of the run (and of a cosine schedule)")
    parser.add_argument("--max-steps", type=int,
                        help="stop after this many optimiser steps in all (the checkpoint records where the epoch was "
                             "cut, and --resume goes on from there; default: no limit)")
    cli.add_workers(parser, "DataLoader processes reading patches")
    parser.add_argument("--seed", type=int, default=123, help="seeds the initialisation, shuffle and augmentation")
    cli.add_device(parser)
    parser.add_argument("--memory-format", choices=sorted(MEMORY_FORMATS), default="channels_last",
                        help="tensor layout of the convolutions (docs/speed.md compares them)")
    parser.add_argument("--autocast", default="auto", choices=["auto", "off", *REDUCED],
                        help="reduced-precision forward/backward (weights and optimiser stay fp32); auto: fp16 with "
                             "a gradient scaler on CUDA, off on the CPU; bf16 is faster where the CPU or GPU has "
                             "native bf16 (measured in docs/training.md)")
    parser.add_argument("--autocast-epochs", type=int, metavar="N",
                        help="the first N epochs run under --autocast, the rest in fp32: bf16's rounding costs a few "
                             "hundredths of a dB at the low rates a cosine schedule ends with (default: every epoch)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <output-dir>/last.pth (with the settings it was started with)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an --output-dir holding another run: its checkpoints and logs are "
                             "deleted once this run's inputs have been checked")
    parser.add_argument("--log-every", type=int, default=100, help="steps between training-metric logs")
    parser.add_argument("--eval-every", type=int, default=1,
                        help="epochs between validations (and best.pth updates); the last epoch is always validated")
    parser.add_argument("--image-every", type=int, default=5, help="epochs between image and filter logs; 0: none")
    parser.add_argument("--in-memory", action="store_true",
                        help="read the whole patch file into memory first (for files that fit, e.g. on a GPU)")
    return parser


REDUCED = {"fp16": torch.float16, "bf16": torch.bfloat16}  # --autocast's dtypes


def autocast_dtype(choice: str, device: torch.device, warn: bool = True) -> torch.dtype | None:
    """The autocast dtype of --autocast on this device: fp16 is for CUDA (a CPU runs it slower than fp32),
    and bf16 where the hardware lacks it (a CPU without AVX512-BF16 or AMX, a GPU before Ampere) is
    emulated, slower than fp32: a warning (from rank 0 alone under torchrun), not a refusal. None: fp32."""
    if choice in ("auto", "off"):
        return torch.float16 if choice == "auto" and device.type == "cuda" else None
    if choice == "fp16" and device.type != "cuda":
        raise SystemExit("error: --autocast fp16 needs CUDA; on the CPU use bf16 (or off)")
    if choice == "bf16" and warn and not native_bf16(device):
        print(f"warning: --autocast bf16: this {'GPU' if device.type == 'cuda' else 'CPU'} has no native bf16: "
              "training runs slower than with --autocast off", file=sys.stderr)
    return REDUCED[choice]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.output_dir = args.output_dir or Path("runs") / f"{'fsrcnn' if args.arch.startswith('fsrcnn') else 'srcnn'}_x{args.scale}"
    if args.image_every < 0:
        parser.error("--image-every must be 0 (no images) or more")
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in --output-dir, --overwrite deletes it: choose one")
    if args.autocast_epochs is not None and (args.autocast_epochs < 0 or args.autocast == "off"):
        parser.error("--autocast-epochs must be 0 or more, with an --autocast other than off")
    if args.autocast_epochs is not None and args.autocast_epochs >= args.epochs:
        parser.error(f"--autocast-epochs {args.autocast_epochs} leaves none of the {args.epochs} --epochs in fp32: "
                     "give fewer, or leave it out to autocast the whole run")
    for name in ("batch_size", "epochs", "log_every", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# What a run is: a resumed run must be given the same (--epochs too under a cosine schedule, whose shape it
# sets); --max-steps, --workers, --device and the logging intervals may change between turns (--autocast auto
# means fp16 on CUDA: a CPU run continued on a GPU computes in fp16 from there, with a fresh gradient scaler).
RUN_SETTINGS = ("train_file", "eval_file", "scale", "arch", "padding", "paper_init", "loss", "loss_weights", "optimizer", "lr",
                "last_lr_ratio", "lr_schedule", "momentum", "augment", "batch_size", "seed", "autocast", "autocast_epochs")


@dataclass
class Progress:
    """Where a run stands; the first four fields are what a checkpoint carries besides the weights and optimiser."""
    epoch: int = 0
    batches_done: int = 0  # of the current epoch
    step: int = 0
    best_psnr: float = -math.inf
    loss_average: float | None = None
    next_images: int = 0  # the epoch from which the next validation logs images and filters
    train_seconds: float = 0.0  # wall-clock in training steps over all sessions (validation not counted)


@dataclass
class Training:
    """Everything one training run holds; the functions below take it step by step."""
    args: argparse.Namespace
    rank: int
    world: int
    device: torch.device
    train_set: PatchDataset
    validation_pairs: list
    color: str
    model: SRCNN | FSRCNN
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: torch.dtype | None
    criterion: object
    meta: dict
    writer: SummaryWriter | None = None
    progress: Progress = field(default_factory=Progress)

    @property
    def last_path(self) -> Path:
        return self.args.output_dir / "last.pth"

    @property
    def best_path(self) -> Path:
        return self.args.output_dir / "best.pth"

    @property
    def per_epoch(self) -> int:
        return len(self.train_set) // self.args.batch_size


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


def finish_distributed(world: int) -> None:
    """Leave the process group, once the run that used it is freed: a DistributedDataParallel wrapper
    still alive at interpreter exit, after its group is gone, now and then aborts a gloo rank
    ("terminate called without an active exception") after the run has finished and saved."""
    if world > 1:
        gc.collect()  # anything of the run's still held in a reference cycle
        dist.destroy_process_group()


def load_data(args: argparse.Namespace, rank: int) -> tuple[PatchDataset, list, str, float]:
    """The training patches, the validation images (degraded as the patches were: the same blur), and the
    colour space and blur the patches were made with; every mismatch with the arguments is refused
    before any training."""
    try:
        train_set = PatchDataset(args.train_file, in_memory=args.in_memory, verify=rank == 0)  # one read checks it
        blur_sigma = float(train_set.attrs.get("blur_sigma", 0.0))
        pairs = eval_pairs(args.eval_file, args.scale, blur_sigma)
    except (ValueError, ImageError) as err:
        raise SystemExit(f"error: {err}") from None
    if train_set.attrs.get("scale", args.scale) != args.scale:
        raise SystemExit(f"error: {args.train_file} was made for scale {train_set.attrs['scale']}, not --scale {args.scale}")
    is_fsrcnn = args.arch.startswith("fsrcnn")
    if bool(train_set.attrs.get("lr_size", False)) != is_fsrcnn:
        raise SystemExit(f"error: {args.train_file}: --arch {args.arch} needs patches made "
                         f"{'with' if is_fsrcnn else 'without'} preprocess.py --lr-size")
    if len(train_set) < args.batch_size:
        raise SystemExit(f"error: {args.train_file} holds {len(train_set)} patches, fewer than one batch of "
                         f"--batch-size {args.batch_size}")
    if args.loss == "ms-ssim":
        losses.ms_ssim_window(int(train_set.attrs.get("patch_size", 33)))  # fails early if patches are too small
    return train_set, pairs, str(train_set.attrs.get("color", "y")), blur_sigma


def make_model(args: argparse.Namespace, color: str, device: torch.device, world: int) -> tuple[SRCNN | FSRCNN, nn.Module]:
    """The network (from --init's weights when given), on the device in its layout, and what trains it:
    itself, or its DistributedDataParallel wrapper, which averages gradients over ranks (with the global
    batch split across them, a step equals the one-process step)."""
    model = build_model(args.arch, channels=1 if color == "y" else 3, padding=args.padding,
                        paper_init=args.paper_init, scale=args.scale)
    if args.init and not args.resume:  # a resumed run takes its weights from the checkpoint
        try:
            model.load_state_dict(load_model(args.init)[0].state_dict())
        except (WeightsError, RuntimeError) as err:
            raise SystemExit(f"error: --init {args.init}: {first_line(err)}") from None
    model = model.to(device, memory_format=MEMORY_FORMATS[args.memory_format])
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    return model, net


def make_optimizer(model: SRCNN | FSRCNN, args: argparse.Namespace) -> torch.optim.Optimizer:
    """The papers' per-layer rates: --lr for all but the last layer (SRCNN's conv3, FSRCNN's
    deconvolution), which learns --last-lr-ratio (0.1) times slower."""
    last = model.deconv if isinstance(model, FSRCNN) else model.conv3
    rest = [p for name, p in model.named_parameters() if not name.startswith(("conv3.", "deconv."))]
    groups = [{"params": rest, "lr": args.lr}, {"params": last.parameters(), "lr": args.lr * args.last_lr_ratio}]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=args.momentum)
    return torch.optim.Adam(groups)


def make_scheduler(optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> torch.optim.lr_scheduler.LambdaLR:
    if args.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / args.epochs)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def set_up(args: argparse.Namespace, rank: int, world: int, device: torch.device, dtype: torch.dtype | None) -> Training:
    """Data, network and optimiser: everything before the first step."""
    if args.batch_size % world:
        raise SystemExit(f"error: --batch-size {args.batch_size} (the global batch) is not divisible by {world} processes")
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels
    train_set, pairs, color, blur_sigma = load_data(args, rank)
    model, net = make_model(args, color, device, world)
    optimizer = make_optimizer(model, args)
    meta = {**model.config(), "arch": args.arch, "scale": args.scale, "color": color, "blur_sigma": blur_sigma,
            "degradation": str(train_set.attrs.get("degradation", "matlab")), "train_file": str(args.train_file),
            "train_patches": len(train_set), "train_file_settings": made_with(train_set.attrs),
            "train_file_digest": train_set.digest}
    return Training(args, rank, world, device, train_set, pairs, color, model, net, optimizer, make_scheduler(optimizer, args),
                    torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),  # bf16 has fp32's range: no scaling
                    dtype, losses.get_loss(args.loss, tuple(args.loss_weights)), meta)


def run_files(folder: Path) -> list[Path]:
    """What makes a folder a run's: its checkpoints and its TensorBoard logs."""
    return [*(folder / name for name in CHECKPOINT_FILES if (folder / name).exists()),
            *sorted(folder.glob("events.out.tfevents.*"))]


def claim_run_folder(args: argparse.Namespace, held: contextlib.ExitStack) -> None:
    """Create the run folder, check it is writable and lock it (for as long as `held` lasts) against a
    second train.py; refuse it when it holds another run unless --resume continues that run or --overwrite
    is to replace it (a fresh run would otherwise replace its best.pth)."""
    folder = make_folder(args.output_dir)
    check_writable(folder)
    held.enter_context(hold_lock(folder / ".lock", f"run folder {folder}"))
    found = run_files(folder)
    if found and not (args.resume or args.overwrite):
        names = ", ".join(dict.fromkeys("TensorBoard logs" if p.name.startswith("events.") else p.name for p in found))
        raise SystemExit(f"error: {folder} holds another run ({names}): continue it with --resume, replace it with "
                         "--overwrite, or choose another --output-dir")


@contextlib.contextmanager
def own_run_folder(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> Iterator[None]:
    """The run folder, for this run alone while the block lasts (claim_run_folder, on rank 0, which writes
    for every process); under torchrun every rank learns whether rank 0 could claim it, so a refusal
    stops them all instead of leaving the others waiting for rank 0."""
    with contextlib.ExitStack() as held:
        problem = None
        if rank == 0:
            try:
                claim_run_folder(args, held)
            except (WriteError, LockedError) as err:
                problem = f"error: {err}"
            except SystemExit as err:
                problem = str(err)
        if world > 1:
            failed = torch.tensor([problem is not None], dtype=torch.int32, device=device)
            dist.all_reduce(failed, op=dist.ReduceOp.MAX)
            problem = problem or ("error: rank 0 could not claim the run folder" if failed.item() else None)
        if problem:
            raise SystemExit(problem)
        yield


def clear_old_run(run: Training) -> None:
    """--overwrite: the old run's checkpoints and logs go, once this run's inputs have all been checked."""
    if run.rank == 0 and run.args.overwrite:
        for old in run_files(run.args.output_dir):
            old.unlink()


def changed_patches(recorded: dict, current: dict) -> list[str]:
    """How the patch file differs from the one a checkpoint's run trained on (`meta` of each): another
    count, other settings (the same path remade with another blur, say, holds as many patches) or, with
    the same settings and count, other contents."""
    differ = [] if recorded["train_patches"] == current["train_patches"] else [
        f"{recorded['train_patches']} training patches (now {current['train_patches']})"]
    was, now = recorded["train_file_settings"], current["train_file_settings"]
    for key in sorted(was.keys() | now.keys()):
        before, after = was.get(key, "unrecorded"), now.get(key, "unrecorded")
        if before != after:
            differ.append(f"patches made with {key} {before} (now {after})" if len(before + after) < 40
                          else f"patches made with another {key}")
    if not differ and recorded["train_file_digest"] != current["train_file_digest"]:
        differ.append("other patches, with the same settings and count (made from other images?)")
    return differ


def check_same_run(state: dict, args: argparse.Namespace, meta: dict, path: Path) -> None:
    """A resumed run must continue with its own data and settings, or it silently becomes another run."""
    recorded, current = state.get("args", {}), {k: str(v) for k, v in vars(args).items()}
    keys = RUN_SETTINGS + (("epochs",) if args.lr_schedule == "cosine" else ())
    same = lambda k: same_file(k, recorded, current) if k.endswith("_file") else recorded[k] == current[k]
    differ = [f"--{k.replace('_', '-')} {recorded[k]} (now {current[k]})" for k in keys if k in recorded and not same(k)]
    given, started = current["init"] != "None", recorded.get("init", "None") != "None"  # not given: the checkpoint's own
    if given and "init" in recorded and not (started and same_file("init", recorded, current)):
        differ.append(f"--init {recorded['init']} (now {current['init']})")
    differ += changed_patches({**meta, **state.get("meta", {})}, meta)  # older checkpoints: what they lack, unchecked
    if differ:
        raise SystemExit(f"error: --resume: {path} was trained with {'; '.join(differ)}; resume with the run's "
                         "settings, or start another run in another --output-dir")


def restore(run: Training) -> None:
    """With --resume, the weights, optimiser, schedule, counters and RNG state of last.pth."""
    state = load_checkpoint(run.last_path, reader="--resume")
    check_same_run(state, run.args, run.meta, run.last_path)
    if run.args.init is None and state.get("args", {}).get("init", "None") != "None":
        run.args.init = Path(state["args"]["init"])  # saved again with each checkpoint: the run's record of its start
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state["scaler"] or not run.scaler.is_enabled():  # a run saved without a scaler (CPU, bf16) starts a fresh one
        run.scaler.load_state_dict(state["scaler"])
    run.progress = Progress(state["epoch"], state.get("batches_done", 0), state["step"], state["best_psnr"],
                            next_images=state["epoch"],
                            train_seconds=state.get("train_seconds", math.nan))  # an older checkpoint: unknown
    torch.set_rng_state(state["rng"]["cpu"])
    if run.device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    if run.rank == 0:
        p = run.progress
        print(f"resumed from {run.last_path}: epoch {p.epoch} (+{p.batches_done} batches), step {p.step}, "
              f"best PSNR {p.best_psnr:.2f} dB")


def open_log(run: Training) -> None:
    """TensorBoard logging, on rank 0 alone (it also validates and saves)."""
    if run.rank == 0:
        threading.excepthook = log_write_failure
        run.writer = SummaryWriter(str(run.args.output_dir))
        run.writer.add_text("args", json.dumps({k: str(v) for k, v in vars(run.args).items()}, indent=1), run.progress.epoch)


def log_write_failure(failure: threading.ExceptHookArgs) -> None:
    """tensorboardX writes event files from its own thread: a disk error there (a full disk) is one
    warning line, not that thread's traceback; the checkpoint written next reports the disk itself."""
    if not isinstance(failure.exc_value, OSError):
        threading.__excepthook__(failure)
        return
    print(f"warning: TensorBoard log not written ({first_line(failure.exc_value)})", file=sys.stderr)


def save_checkpoint(run: Training, epoch: int, batches: int, scores: dict | None) -> None:
    """best.pth when validation improved, and last.pth: everything a resume needs, mid-epoch included."""
    # What tensorboardX's thread has written reaches the disk, so a run killed later (a session's end) keeps
    # its curves to about here; its flush does not wait for the queue: the last moment's events may be lost.
    run.writer.flush()
    p = run.progress
    weights = {"model": run.model.state_dict(), "meta": {**run.meta, "epoch": round(epoch + batches / run.per_epoch, 3),
                                                         "step": p.step, "eval_file": str(run.args.eval_file),
                                                         "train_seconds": round(p.train_seconds, 1)}}
    if scores is not None:
        weights["meta"].update(val_psnr=scores["psnr"], val_ssim=scores["ssim"])
        if scores["psnr"] >= p.best_psnr:
            save_atomic(weights, run.best_path)
    rng = {"cpu": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state()} if run.device.type == "cuda" else {})}
    save_atomic({**weights, "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                 "scaler": run.scaler.state_dict(), "epoch": epoch, "batches_done": batches, "step": p.step,
                 "best_psnr": p.best_psnr, "train_seconds": p.train_seconds, "rng": rng,
                 "args": {k: str(v) for k, v in vars(run.args).items()}},
                run.last_path, keep_previous=True)


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, writes a checkpoint and stops."""

    def __init__(self) -> None:
        self.signal = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.request)

    def request(self, signum: int, frame: object) -> None:
        self.signal = signum


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which stops cleanly: a signal sent to
    the whole process group (a job scheduler, `timeout`) would otherwise kill the workers mid-batch."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def epoch_loader(run: Training, epoch: int) -> DataLoader:
    """This rank's batches of the epoch not yet done. The shuffle comes from seed + epoch, so a run
    resumed mid-epoch replays exactly the batches an uninterrupted run would have seen; each rank takes
    its slice of every global batch (a DistributedSampler that also resumes mid-epoch)."""
    args, per_rank = run.args, run.args.batch_size // run.world
    order = torch.randperm(len(run.train_set), generator=torch.Generator().manual_seed(args.seed + epoch))
    batches = order[: run.per_epoch * args.batch_size].view(run.per_epoch, args.batch_size)
    mine = batches[run.progress.batches_done:, run.rank * per_rank:(run.rank + 1) * per_rank].flatten().tolist()
    return DataLoader(run.train_set, batch_size=per_rank, sampler=mine, drop_last=True, num_workers=args.workers,
                      pin_memory=run.device.type == "cuda", worker_init_fn=ignore_stop_signals)


def check_loss(run: Training, value: float) -> None:
    """Stop at a NaN/Inf loss or one 50x its running mean: the learning rate diverges."""
    p = run.progress
    if not math.isfinite(value):
        raise SystemExit(f"error: loss became {value} at step {p.step + 1}; training stopped, the last good "
                         f"checkpoint is {run.last_path} (lower --lr?)")
    if p.loss_average is not None and p.loss_average > 0 and p.step > 100 and value > 50 * p.loss_average:
        raise SystemExit(f"error: loss jumped to {value:.4g} at step {p.step + 1} (running mean {p.loss_average:.4g}):"
                         f" the learning rate {run.args.lr:g} diverges; last good checkpoint: {run.last_path}")
    p.loss_average = value if p.loss_average is None else 0.99 * p.loss_average + 0.01 * value


def train_step(run: Training, lr: torch.Tensor, hr: torch.Tensor, augment_rng: torch.Generator) -> tuple[float, torch.Tensor, torch.Tensor]:
    """One optimiser step; returns the loss, the output and the target it was compared with. Each
    batch's augmentation comes from the seed and the step, so a resumed run replays it."""
    args, p, per_rank = run.args, run.progress, run.args.batch_size // run.world
    if args.augment:
        lr, hr = augment_pairs(lr, hr, augment_rng.manual_seed(args.seed * 1_000_003 + p.step), total=args.batch_size,
                               start=run.rank * per_rank)
    lr, hr = lr.to(run.device, non_blocking=True), hr.to(run.device, non_blocking=True)
    if run.model.border:  # valid padding: the loss covers the centre the network computes
        hr = hr[..., run.model.border:-run.model.border, run.model.border:-run.model.border]
    reduced = run.autocast is not None and (args.autocast_epochs is None or p.step < args.autocast_epochs * run.per_epoch)
    with torch.autocast(run.device.type, dtype=run.autocast or torch.float32, enabled=reduced):
        sr = run.net(lr)
    loss = run.criterion(sr.float(), hr)
    value = loss.item()
    check_loss(run, value)
    run.optimizer.zero_grad(set_to_none=True)
    if reduced:  # the scaler (on for fp16 alone) guards fp16 gradients; fp32 epochs after --autocast-epochs need none
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    p.step += 1
    p.batches_done += 1
    return value, sr, hr


@torch.no_grad()
def log_training(run: Training, value: float, sr: torch.Tensor, hr: torch.Tensor) -> None:
    sr, step = sr.float().clamp(0, 1), run.progress.step
    run.writer.add_scalar("train/loss", value, step)
    run.writer.add_scalar("train/psnr", losses.psnr(sr, hr).item(), step)
    run.writer.add_scalar("train/ssim", losses.ssim(sr, hr).item(), step)
    if min(hr.shape[-2:]) >= 33:
        run.writer.add_scalar("train/ms_ssim", losses.ms_ssim(sr, hr).item(), step)
    run.writer.add_scalar("train/lr", run.optimizer.param_groups[0]["lr"], step)


def stop_everywhere(run: Training, stop: StopRequest) -> None:
    """Every rank stops at the same step, or the others would wait forever."""
    if run.world > 1:
        flag = torch.tensor([stop.signal], device=run.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop.signal = int(flag.item())


def train_epoch(run: Training, epoch: int, stop: StopRequest, augment_rng: torch.Generator) -> None:
    """The epoch's remaining batches, until it ends, a signal arrives or --max-steps is reached."""
    args, p = run.args, run.progress
    bar = tqdm(epoch_loader(run, epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False,
               initial=p.batches_done, total=run.per_epoch, disable=run.rank > 0)
    for lr, hr in bar:
        value, sr, hr = train_step(run, lr, hr, augment_rng)
        stop_everywhere(run, stop)
        if run.writer and p.step % args.log_every == 0:
            log_training(run, value, sr, hr)
            bar.set_postfix(loss=f"{value:.5f}")
        if stop.signal or (args.max_steps and p.step >= args.max_steps):
            break
    bar.close()


def validate(run: Training, with_strip: bool) -> dict:
    """Mean PSNR/SSIM/MS-SSIM (and bicubic's) on the validation images, by evaluate.py: the same code and
    arithmetic as `test.py --dataset --inference-path channels_last` (or eager, for NCHW training)."""
    path = "channels_last" if run.args.memory_format == "channels_last" else "eager"
    upscaler = Upscaler(run.model, path, run.device)
    scores = evaluate_pairs(upscaler, run.validation_pairs, run.args.scale, run.color, with_ms_ssim=True)["mean"]
    if with_strip:
        scores["strip"] = first_image_strip(run, upscaler)
    return scores


def first_image_strip(run: Training, upscaler: Upscaler) -> np.ndarray:
    """The first validation image's bicubic | network | HR Y, side by side, for TensorBoard."""
    _, hr, lr = run.validation_pairs[0]
    bicubic = upscale_bicubic(lr, run.args.scale)
    return np.concatenate([y_channel(bicubic), upscale(upscaler, lr, bicubic, run.color)[1], y_channel(hr)], axis=1)


def log_validation(run: Training, scores: dict) -> None:
    step, writer = run.progress.step, run.writer
    for key in ("psnr", "ssim", "ms_ssim", "bicubic_psnr"):
        if key in scores:
            writer.add_scalar(f"val/{key}", scores[key], step)
    writer.add_scalar("time/train_seconds", run.progress.train_seconds, step)  # time-to-quality's clock
    if "strip" in scores:
        writer.add_image("val/bicubic_srcnn_hr", to_uint8(scores["strip"])[None], step, dataformats="CHW")
        first = run.model.feature[0] if isinstance(run.model, FSRCNN) else run.model.conv1
        weights = first.weight.detach().cpu().numpy()[:, 0]  # the first input channel (Y, Y or R)
        writer.add_image("filters/first_layer", filter_grid(weights)[None], step, dataformats="CHW")
    writer.flush()


def end_epoch(run: Training, epoch: int, started: float, stopping: bool) -> None:
    """After an epoch (or a cut one): the schedule's step, validation when due, and the checkpoint; rank 0
    alone validates and saves while the other ranks wait at the barrier."""
    args, p = run.args, run.progress
    finished = p.batches_done >= run.per_epoch
    if finished:
        run.scheduler.step()
        p.batches_done = 0
    if run.writer and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs or stopping):
        # the first validation logs images, then one every --image-every epochs
        with_strip = args.image_every > 0 and epoch >= p.next_images
        if with_strip:
            p.next_images = epoch + args.image_every
        scores = validate(run, with_strip)
        log_validation(run, scores)
        improved = scores["psnr"] > p.best_psnr
        p.best_psnr = max(p.best_psnr, scores["psnr"])
        save_checkpoint(run, epoch + finished, p.batches_done, scores)
        tqdm.write(f"epoch {epoch + 1}: step {p.step}, val PSNR {scores['psnr']:.2f} dB (bicubic "
                   f"{scores['bicubic_psnr']:.2f}), SSIM {scores['ssim']:.4f}, {time.perf_counter() - started:.1f} s"
                   f"{' *' if improved else ''}", file=sys.stdout)
    elif run.writer:
        save_checkpoint(run, epoch + finished, p.batches_done, None)
        tqdm.write(f"epoch {epoch + 1}: step {p.step}, {time.perf_counter() - started:.1f} s", file=sys.stdout)
    if run.world > 1:
        dist.barrier()


def save_interrupted(run: Training, epoch: int, stop: StopRequest) -> None:
    """A signal mid-epoch: save where the run stands."""
    if run.writer:
        save_checkpoint(run, epoch, run.progress.batches_done, None)
        run.writer.close()
        print(f"interrupted by {signal.Signals(stop.signal).name} at step {run.progress.step}: checkpoint "
              f"{run.last_path}; continue with --resume", file=sys.stderr)


def train(run: Training) -> int:
    """Epochs until --epochs or --max-steps, validating and saving after each; a signal saves and stops.
    Returns the exit status: 0, or 128 + the signal's number."""
    args, stop, augment_rng = run.args, StopRequest(), torch.Generator()
    run.model.train()
    for epoch in range(run.progress.epoch, args.epochs):
        if args.max_steps and run.progress.step >= args.max_steps:  # a resumed run that already got there
            break
        started = time.perf_counter()
        train_epoch(run, epoch, stop, augment_rng)
        run.progress.train_seconds += time.perf_counter() - started
        if stop.signal and run.progress.batches_done < run.per_epoch:
            save_interrupted(run, epoch, stop)
            return 128 + stop.signal
        stopping = bool(stop.signal) or bool(args.max_steps and run.progress.step >= args.max_steps)
        end_epoch(run, epoch, started, stopping)
        stop_everywhere(run, stop)  # a signal during validation stops here, not a step into the next epoch
        if stop.signal and run.writer:  # it came as the epoch ended: that epoch is validated and saved
            print(f"interrupted by {signal.Signals(stop.signal).name} after epoch {epoch + 1}: checkpoint "
                  f"{run.last_path}; continue with --resume", file=sys.stderr)
        if stopping or stop.signal:
            break
    if run.writer:
        run.writer.close()
        print(f"best val PSNR {run.progress.best_psnr:.2f} dB; weights in {run.best_path}")
    return 128 + stop.signal if stop.signal else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank, world, device = setup_distributed(args.device)
    dtype = autocast_dtype(args.autocast, device, warn=rank == 0)  # a refusal comes before the run folder is claimed
    with own_run_folder(args, rank, world, device):
        run = set_up(args, rank, world, device, dtype)
        if args.resume:
            restore(run)
        clear_old_run(run)
        open_log(run)
        status = train(run)
    del run  # its DistributedDataParallel wrapper goes before finish_distributed leaves the process group
    finish_distributed(world)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
