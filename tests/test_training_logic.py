"""train.py's bookkeeping, run in-process on tiny generated patches with a scripted validation: which
epoch's weights best.pth holds, what last.pth records, the loss it builds from its flags, and the
per-layer learning rates of its optimiser."""
import math
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from conftest import noisy_patches, textured_image
from PIL import Image

import train
from models import build_model

BATCH, COUNT = 8, 32  # 4 optimiser steps an epoch
LR, RATIO = 2e-3, 0.25


@pytest.fixture
def files(tmp_path):
    eval_folder = tmp_path / "eval"
    eval_folder.mkdir()
    Image.fromarray(textured_image(48, 48)).save(eval_folder / "a.png")
    return noisy_patches(tmp_path / "tiny.h5", count=COUNT, size=15), eval_folder


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """train.main installs its own SIGINT/SIGTERM handlers; pytest's are put back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class ScriptedValidation:
    """Stands in for train.validate: returns the next scripted PSNR (and a distinct SSIM per call, so a
    checkpoint's SSIM also says which validation it came from) and keeps the weights it was shown."""

    def __init__(self, psnrs):
        self.psnrs, self.weights, self.runs = list(psnrs), [], []

    def __call__(self, run, with_strip):
        self.weights.append({k: v.detach().clone() for k, v in run.model.state_dict().items()})
        self.runs.append(run)
        i = len(self.weights) - 1
        return {"psnr": self.psnrs[i], "ssim": 0.5 + 0.01 * i, "ms_ssim": 0.6 + 0.01 * i,
                "bicubic_psnr": 20.0, "bicubic_ssim": 0.5, "bicubic_ms_ssim": 0.6}


def train_run(monkeypatch, files, out, psnrs, *extra):
    validation = ScriptedValidation(psnrs)
    monkeypatch.setattr(train, "validate", validation)
    train_file, eval_folder = files
    train.main(["--train-file", str(train_file), "--eval-file", str(eval_folder), "--arch", "9-1-5",
                "--batch-size", str(BATCH), "--workers", "0", "--lr", "1e-3", "--image-every", "0",
                "--output-dir", str(out), *map(str, extra)])
    return validation


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("psnrs,best_epoch", [
    ((20.0, 25.0, 22.0), 2),  # the best in the middle
    ((25.0, 22.0, 20.0), 1),  # the first stays best
    ((20.0, 22.0, 25.0), 3),  # an improvement at the last epoch counts
    ((20.0, 25.0, 25.0), 3),  # a tie: the later (longer-trained) weights of equal score replace the earlier
])
def test_best_pth_holds_the_weights_of_the_best_validation(monkeypatch, files, tmp_path, capsys, psnrs, best_epoch):
    validation = train_run(monkeypatch, files, tmp_path / "run", psnrs, "--epochs", 3)
    assert len(validation.weights) == 3
    assert not same_weights(validation.weights[0], validation.weights[1])  # each epoch trains: weights tell epochs apart
    assert not same_weights(validation.weights[1], validation.weights[2])
    best, last = load(tmp_path / "run" / "best.pth"), load(tmp_path / "run" / "last.pth")
    assert best["meta"]["epoch"] == best_epoch and best["meta"]["step"] == best_epoch * COUNT // BATCH
    assert best["meta"]["val_psnr"] == psnrs[best_epoch - 1] == max(psnrs)
    assert best["meta"]["val_ssim"] == pytest.approx(0.5 + 0.01 * (best_epoch - 1))
    assert same_weights(best["model"], validation.weights[best_epoch - 1])
    assert last["best_psnr"] == max(psnrs)
    assert last["epoch"] == 3 and last["meta"]["val_psnr"] == psnrs[-1]
    assert same_weights(last["model"], validation.weights[-1])
    # the log stars the validations that beat every earlier one (a tie is no improvement)
    starred = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()
               if line.startswith("epoch") and line.endswith(" *")]
    assert starred == [f"epoch {i + 1}" for i, p in enumerate(psnrs) if p > max(psnrs[:i], default=-math.inf)]


def test_best_pth_is_written_only_at_validations(monkeypatch, files, tmp_path):
    """--eval-every 2 over 3 epochs validates after epochs 2 and 3 (the last always): epoch 1's
    weights are never best.pth, even though nothing had scored before them."""
    validation = train_run(monkeypatch, files, tmp_path / "run", (25.0, 22.0), "--epochs", 3, "--eval-every", 2)
    assert len(validation.weights) == 2
    best, last = load(tmp_path / "run" / "best.pth"), load(tmp_path / "run" / "last.pth")
    assert best["meta"]["epoch"] == 2 and best["meta"]["val_psnr"] == 25.0
    assert same_weights(best["model"], validation.weights[0])
    assert last["best_psnr"] == 25.0 and last["epoch"] == 3


def test_a_run_folder_copied_with_its_patches_resumes_in_another_checkout(monkeypatch, tmp_path):
    """An archived run is continued in another clone: its checkpoint names the old absolute paths."""
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "data" / "eval").mkdir(parents=True)
    (old / "runs").mkdir()
    Image.fromarray(textured_image(48, 48)).save(old / "data" / "eval" / "a.png")
    noisy_patches(old / "runs" / "tiny.h5", count=COUNT, size=15)
    train_run(monkeypatch, (old / "runs" / "tiny.h5", old / "data" / "eval"), old / "runs" / "x", [20.0], "--epochs", 1)
    shutil.copytree(old, new)
    shutil.rmtree(old)
    train_run(monkeypatch, (new / "runs" / "tiny.h5", new / "data" / "eval"), new / "runs" / "x", [21.0],
              "--epochs", 2, "--resume")
    assert torch.load(new / "runs" / "x" / "last.pth", weights_only=False)["epoch"] == 2
    noisy_patches(new / "other.h5", count=COUNT, size=15)  # the same patches elsewhere are another run's file
    with pytest.raises(SystemExit, match="--train-file"):
        train_run(monkeypatch, (new / "other.h5", new / "data" / "eval"), new / "runs" / "x", [22.0],
                  "--epochs", 3, "--resume")


def test_a_resumed_run_keeps_the_best_score_it_had(monkeypatch, files, tmp_path):
    """Cut after epoch 2 (best 25 at epoch 1), resumed: epoch 3's 22 is worse than the restored best,
    so best.pth keeps epoch 1's weights."""
    out = tmp_path / "run"
    first = train_run(monkeypatch, files, out, (25.0, 20.0), "--epochs", 3, "--max-steps", 2 * COUNT // BATCH)
    assert len(first.weights) == 2 and load(out / "last.pth")["best_psnr"] == 25.0
    second = train_run(monkeypatch, files, out, (22.0,), "--epochs", 3, "--resume")
    assert len(second.weights) == 1
    best, last = load(out / "best.pth"), load(out / "last.pth")
    assert best["meta"]["epoch"] == 1 and best["meta"]["val_psnr"] == 25.0
    assert same_weights(best["model"], first.weights[0])
    assert last["best_psnr"] == 25.0 and last["epoch"] == 3 and same_weights(last["model"], second.weights[0])


def test_a_signal_as_an_epoch_ends_stops_after_it_and_says_so(monkeypatch, files, tmp_path, capsys):
    """Ctrl-C during epoch 1's validation: epoch 1 is scored and saved, epoch 2 never starts, exit 130."""
    class SignalledValidation(ScriptedValidation):
        def __call__(self, run, with_strip):
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag: validation goes on
            return super().__call__(run, with_strip)

    monkeypatch.setattr(train, "validate", SignalledValidation((25.0,)))
    train_file, eval_folder = files
    with pytest.raises(SystemExit) as stopped:
        train.main(["--train-file", str(train_file), "--eval-file", str(eval_folder), "--arch", "9-1-5",
                    "--batch-size", str(BATCH), "--workers", "0", "--epochs", "3", "--output-dir", str(tmp_path)])
    assert stopped.value.code == 128 + signal.SIGINT
    assert "interrupted by SIGINT after epoch 1" in capsys.readouterr().err
    last = load(tmp_path / "last.pth")
    assert last["epoch"] == 1 and last["batches_done"] == 0 and last["best_psnr"] == 25.0


def test_autocast_epochs_run_in_bf16_and_the_rest_in_fp32(monkeypatch, files, tmp_path):
    """--autocast bf16 --autocast-epochs 1 of 2: epoch 1's 4 steps compute in bf16, epoch 2's in fp32; the
    weights and the optimiser stay fp32 throughout (what best.pth holds). bf16 runs on any CPU, emulated
    where it is not native (then only slower: its warning is silenced here)."""
    monkeypatch.setattr(train, "native_bf16", lambda device: True)
    dtypes, step = [], train.train_step

    def spy(run, lr, hr, augment_rng):
        value, sr, hr = step(run, lr, hr, augment_rng)
        dtypes.append(sr.dtype)
        return value, sr, hr

    monkeypatch.setattr(train, "train_step", spy)
    train_run(monkeypatch, files, tmp_path / "run", (20.0, 21.0), "--epochs", 2, "--autocast", "bf16",
              "--autocast-epochs", 1)
    assert dtypes == [torch.bfloat16] * 4 + [torch.float32] * 4
    assert {v.dtype for v in load(tmp_path / "run" / "best.pth")["model"].values()} == {torch.float32}


def test_a_bf16_run_cut_in_each_precision_and_resumed_matches_a_straight_run(monkeypatch, files, tmp_path):
    """The switch to fp32 goes by the step, which a checkpoint restores: a run cut at step 3 (bf16) and step 6
    (fp32), resumed each time, ends bit-identical to the run that went straight through."""
    monkeypatch.setattr(train, "native_bf16", lambda device: True)
    common = ("--epochs", 3, "--autocast", "bf16", "--autocast-epochs", 1, "--lr-schedule", "cosine", "--augment")
    train_run(monkeypatch, files, tmp_path / "straight", (20.0, 21.0, 22.0), *common)
    split = tmp_path / "split"
    train_run(monkeypatch, files, split, (20.0,), *common, "--max-steps", 3)
    train_run(monkeypatch, files, split, (20.0, 21.0), *common, "--max-steps", 6, "--resume")
    assert load(split / "last.pth")["step"] == 6
    train_run(monkeypatch, files, split, (21.0, 22.0), *common, "--resume")
    assert same_weights(load(tmp_path / "straight" / "last.pth")["model"], load(split / "last.pth")["model"])


def test_autocast_auto_is_fp32_on_the_cpu_and_fp16_is_refused_there():
    cpu = torch.device("cpu")
    assert train.autocast_dtype("auto", cpu) is None and train.autocast_dtype("off", cpu) is None
    assert train.autocast_dtype("auto", torch.device("cuda")) is torch.float16
    with pytest.raises(SystemExit, match="--autocast fp16 needs CUDA"):
        train.autocast_dtype("fp16", cpu)


def test_bf16_without_hardware_support_trains_with_a_warning(monkeypatch, capsys):
    cpu = torch.device("cpu")
    monkeypatch.setattr(train, "native_bf16", lambda device: True)
    assert train.autocast_dtype("bf16", cpu) is torch.bfloat16 and capsys.readouterr().err == ""
    monkeypatch.setattr(train, "native_bf16", lambda device: False)
    assert train.autocast_dtype("bf16", cpu) is torch.bfloat16
    assert "this CPU has no native bf16: training runs slower" in capsys.readouterr().err


def reference_weighted(sr, hr, w_mse, w_psnr, w_ssim):
    """The weighted loss from its definition, with SSIM from scikit-image (the same Gaussian window)."""
    from skimage.metrics import structural_similarity
    sr64, hr64 = sr.double().numpy(), hr.double().numpy()
    mse = float(np.mean((sr64 - hr64) ** 2))
    ssim = np.mean([structural_similarity(a[0], b[0], data_range=1.0, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False) for a, b in zip(sr64, hr64)])
    return w_mse * mse - w_psnr * 10 * math.log10(1 / mse) + w_ssim * (1 - ssim)


@pytest.mark.parametrize("weights", [None, (0.3, 0.05, 2.0)])
def test_train_builds_the_weighted_loss_from_its_flags_in_mse_psnr_ssim_order(monkeypatch, files, tmp_path, weights):
    extra = ["--loss", "weighted"] + (["--loss-weights", *weights] if weights else [])
    validation = train_run(monkeypatch, files, tmp_path / "run", (20.0,), "--epochs", 1, *extra)
    criterion = validation.runs[0].criterion
    hr = torch.from_numpy(textured_image(40, 40, seed=3, channels=1) / 255.0).float()[None, None].repeat(2, 1, 1, 1)
    sr = (hr + 0.1 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    expected = reference_weighted(sr, hr, *(weights or (0.4, 0.5, 0.1)))
    assert criterion(sr, hr).item() == pytest.approx(expected, rel=1e-4)


def test_loss_weights_default_is_mse_psnr_ssim_0_4_0_5_0_1():
    parser = train.build_parser()
    action = next(a for a in parser._actions if a.dest == "loss_weights")
    assert action.metavar == ("MSE", "PSNR", "SSIM")
    assert parser.parse_args(["--train-file", "t.h5", "--eval-file", "e"]).loss_weights == [0.4, 0.5, 0.1]


@pytest.mark.parametrize("autocast_epochs", [3, 4])
def test_autocast_epochs_that_leave_no_fp32_epoch_are_refused(autocast_epochs, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--train-file", "t.h5", "--eval-file", "e", "--epochs", "3", "--autocast", "bf16",
                          "--autocast-epochs", str(autocast_epochs)])
    assert "leaves none of the 3 --epochs in fp32" in capsys.readouterr().err
    assert train.parse_args(["--train-file", "t.h5", "--eval-file", "e", "--epochs", "3", "--autocast", "bf16",
                             "--autocast-epochs", "2"]).autocast_epochs == 2


def optimizer_for(arch, *extra, dtype=torch.float32):
    args = train.parse_args(["--train-file", "t.h5", "--eval-file", "e", *map(str, extra)])
    torch.manual_seed(0)
    model = build_model(arch, scale=3).to(dtype)
    return model, train.make_optimizer(model, args), args


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("arch,last", [("9-5-5", "conv3"), ("9-1-5", "conv3"), ("fsrcnn", "deconv"),
                                       ("fsrcnn-s", "deconv")])
def test_the_last_layer_alone_learns_at_last_lr_ratio(arch, last, optimizer):
    model, opt, _ = optimizer_for(arch, "--lr", LR, "--last-lr-ratio", RATIO, "--optimizer", optimizer)
    names = {id(p): name for name, p in model.named_parameters()}
    in_groups = [(names[id(p)], group["lr"]) for group in opt.param_groups for p in group["params"]]
    assert sorted(name for name, _ in in_groups) == sorted(names.values())  # every parameter, each once
    slow = {name for name, lr in in_groups if lr == pytest.approx(LR * RATIO, rel=1e-12)}
    fast = {name for name, lr in in_groups if lr == pytest.approx(LR, rel=1e-12)}
    assert slow == {f"{last}.weight", f"{last}.bias"}
    assert fast == set(names.values()) - slow
    if optimizer == "sgd":
        assert all(group["momentum"] == 0.9 for group in opt.param_groups)  # --momentum's default reaches SGD
    else:
        assert isinstance(opt, torch.optim.Adam)


def test_default_rates_are_the_papers_1e_4_and_1e_5():
    model, opt, args = optimizer_for("9-5-5")
    assert args.lr == 1e-4 and args.last_lr_ratio == 0.1 and args.optimizer == "adam"
    rates = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
    for name, p in model.named_parameters():
        assert rates[id(p)] == pytest.approx(1e-5 if name.startswith("conv3.") else 1e-4, rel=1e-12), name


def one_step_moves(arch, optimizer, ratio):
    """How far one optimiser step moves each parameter, from the same weights and batch; and the gradient."""
    model, opt, _ = optimizer_for(arch, "--lr", LR, "--last-lr-ratio", ratio, "--optimizer", optimizer, "--momentum", 0,
                                  dtype=torch.float64)  # float64: a step's few-ulp rounding stays far below the tolerance
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    side = 36 if arch.startswith("fsrcnn") else 12
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.nn.functional.mse_loss(model(x), target).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    opt.step()
    return {name: p.detach() - before[name] for name, p in model.named_parameters()}, grads


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("arch,last", [("9-5-5", "conv3"), ("fsrcnn-s", "deconv")])
def test_a_real_step_moves_the_last_layer_ratio_times_as_far(arch, last, optimizer):
    slow, grads = one_step_moves(arch, optimizer, 0.1)
    even, _ = one_step_moves(arch, optimizer, 1)
    for name in slow:
        factor = 0.1 if name.startswith(last + ".") else 1.0
        assert grads[name].abs().max() > 0, name
        torch.testing.assert_close(slow[name], factor * even[name], rtol=1e-6, atol=1e-15, msg=name)
        if optimizer == "sgd":  # plain SGD: the step is -lr * gradient
            torch.testing.assert_close(slow[name], -LR * factor * grads[name], rtol=1e-6, atol=1e-15, msg=name)
