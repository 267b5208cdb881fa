"""The command-line vocabulary every script shares: one flag name per concept (--scale, --device,
--workers, --output-dir, --weights-file, --data), --help that shows every default, and one-line errors."""
from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from files import LockedError, WriteError

DATA = Path("data")  # where the README puts T91/, Set5/, Set14/ (a folder or a link in the clone)

# How a network can run (inference.Upscaler; benchmarks/inference_paths.py times each against plain eager
# fp32 NCHW): the tensor layout, torch.compile, ONNX Runtime on the exported graph, reduced-precision autocast.
INFERENCE_PATHS = ("eager", "channels_last", "compile", "onnxruntime", "fp16", "bf16")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and "(default: ...)" after every flag that has a value by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        no_value = default is None or default is False or default is argparse.SUPPRESS or default == []
        if "default" in text or no_value or not action.option_strings:  # a help text may state its own default
            return text
        return f"{text} (default: {shown(default).replace('%', '%%')})"  # argparse %-formats help texts


def shown(default: object) -> str:
    """A default as one would type it: a list's items apart by spaces (--scale 2 3 4), not its repr."""
    return " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)


def parser(doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)


def add_scale(parser: argparse.ArgumentParser, several: bool = False, default: int = 3) -> None:
    if several:
        parser.add_argument("--scale", type=int, nargs="+", default=[2, 3, 4], choices=[2, 3, 4],
                            help="upscaling factors")
    else:
        parser.add_argument("--scale", type=int, default=default, choices=[2, 3, 4], help="upscaling factor")


def add_device(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, choices=["auto", "cpu", "cuda"],
                        help="where the network runs (auto: CUDA when PyTorch sees a GPU)")


def add_inference_path(parser: argparse.ArgumentParser, default: str, what: str) -> None:
    parser.add_argument("--inference-path", default=default, choices=["auto", *INFERENCE_PATHS], help=what)


def add_workers(parser: argparse.ArgumentParser, what: str, default: int | None = None) -> None:
    if default is None:
        parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                            help=f"{what} (default: min(4, CPU count))")
    else:
        parser.add_argument("--workers", type=int, default=default, help=what)


def add_output_dir(parser: argparse.ArgumentParser, default: Path | None, what: str) -> None:
    parser.add_argument("--output-dir", type=Path, default=default, help=what)


def add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DATA, help="the data folder: T91/, Set5/, Set14/, SunHays80/, as the README's Data section lays out")


def add_peers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers", type=Path, default=Path("../shared/peers"),
                        help="folder holding OpenCV's dnn_superres graphs, <NAME>_x<s>.pb "
                             "(../shared/peers/README.md says where they come from)")


def photo_size(text: str) -> tuple[int, int]:
    """--size WIDTHxHEIGHT (the benchmarks' photos), for argparse."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 640x360)") from None
    if min(width, height) < 8:
        raise argparse.ArgumentTypeError(f"{text}: both sides must be 8 pixels or more")
    return width, height


@contextlib.contextmanager
def one_line_errors(*expected: type[Exception]) -> Iterator[None]:
    """A script's `main` (as a decorator) or a block: a failed write, a folder or file another process holds,
    and the `expected` errors (bad weights, images, data) end the script with one `error: ...` line naming
    the file and the problem, never a traceback. Their messages are written to be read as they are."""
    try:
        yield
    except (WriteError, LockedError, *expected) as err:
        raise SystemExit(f"error: {err}") from None
