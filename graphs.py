"""The networks as ONNX graphs, run by ONNX Runtime without PyTorch: importing PyTorch alone takes 1-2 s
on these CPUs, longer than upscaling a photo with FSRCNN, so a plain upscale with a ready graph never
imports it (test.py).

A graph is ready for a weights file when `<weights>.onnx` sits beside it (weights/export_graphs.py
writes one for every shipped file) or the cache holds one exported for it (test.py exports one on first
use), and it passes `open_graph`'s checks: it records the sha256 of that weights file, ONNX Runtime
loads it, and on the fixed example input it gives the output PyTorch gave when it was exported, within
TOLERANCE. inference.write_graph writes graphs with that record.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from hub import cache_folder, file_sha256
from tiles import auto_tile, run_tiled
from utils import first_line

TOLERANCE = 1e-4  # how far a graph's output on the example input may be from PyTorch's at export
# ONNX Runtime's arena holds 2-3x the activations inference.activation_bytes_per_pixel counts (a whole
# 360x640 FSRCNN input grew the process by 726 MB), so graphs run in tiles of an eighth of the budget:
# test.py's x3 FSRCNN upscale of a 640x360 photo then peaks at 333 MiB instead of 552, as fast.
BUDGET_SHARE = 8
RECORD_KEY = "srcnn_graph"  # the ONNX metadata entry holding the graph's record (JSON)
# which example_input a graph's record was made on: 1 (not recorded) drew it from numpy.random
EXAMPLE_INPUT_VERSION = 2
# ONNX Runtime's idle threads sleep instead of spin-waiting for more work, so that test.py's decode and
# encode threads get the cores between tiles and images (path_choice's cache is keyed by this too)
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


def example_input(channels: int, halo: int) -> np.ndarray:
    """The input export traces and every check runs: fixed, in [0, 1), each value the previous one in
    raster order plus the golden ratio, mod 1 (so no two are equal), made without PyTorch and without
    numpy.random, whose import alone costs 12-26 ms under load (docs/speed.md) of a 0.8 s upscale."""
    side = 2 * halo + 8
    steps = np.arange(channels * side * side, dtype=np.float64).reshape(1, channels, side, side)
    return (steps * 0.6180339887498949 % 1).astype(np.float32)


def encode_output(output: np.ndarray) -> str:
    """The example output as text for the graph's record (float32, base64)."""
    return base64.b64encode(np.ascontiguousarray(output, np.float32).tobytes()).decode()


def cached_graph_path(weights_sha256: str, scale: int) -> Path:
    """Where test.py keeps the graph it exported for weights without one beside them; by scale too, since
    FSRCNN weights that do not record theirs are built for the --scale asked for."""
    return cache_folder() / "onnx" / f"weights-{weights_sha256[:16]}-x{scale}.onnx"


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (hidden on purpose)
        return False


class GraphError(ValueError):
    """A graph file that cannot be used for the weights asked for; the message names it and says why."""


class GraphUpscaler:
    """A network's ONNX graph in an ONNX Runtime CPU session: `run_array(x)` is the network's
    super_resolve on an N x C x H x W float32 array in [0, 1], whole or in tiles. `record` holds what
    the graph was exported from: network (its name), takes_lr, scale, halo, channels, bytes_per_pixel,
    the weights' meta (colour, blur) and their file's sha256."""

    def __init__(self, path: Path, session: object, record: dict) -> None:
        self.path, self.session, self.record = path, session, record
        self.takes_lr, self.halo, self.network = record["takes_lr"], record["halo"], record["network"]
        self.scale = record["scale"] if self.takes_lr else 1

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": np.ascontiguousarray(x, np.float32)})[0]

    def run_array(self, x: np.ndarray, tile: int = 0) -> np.ndarray:
        """The network's output for a batch; `tile` 0 runs it whole until an eighth of tiles.ACTIVATION_BUDGET."""
        tile = tile or auto_tile(x.shape, self.record["bytes_per_pixel"], self.halo, BUDGET_SHARE)
        if not tile:
            return self.run(x)
        return run_tiled(self.run, x, tile, self.scale, self.halo, lambda part, shape: np.empty(shape, part.dtype))


def open_graph(path: Path, weights_sha256: str | None = None, expected: np.ndarray | None = None) -> GraphUpscaler:
    """The graph at `path` in a session, after its checks (the weights it records, that it loads, its
    output on the example input: `expected`, a network's own, or else the one its record holds); a
    GraphError says which failed."""
    try:
        import onnxruntime
    except ImportError:
        raise GraphError("onnxruntime is not installed (pip install -r requirements.txt)") from None
    try:
        options = onnxruntime.SessionOptions()
        for key, value in SESSION_CONFIG.items():
            options.add_session_config_entry(key, value)
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        record = json.loads(session.get_modelmeta().custom_metadata_map[RECORD_KEY])
        graph = GraphUpscaler(path, session, record)
        expected = np.frombuffer(base64.b64decode(record["example_output"]), np.float32) if expected is None \
            else expected.ravel()
        got = graph.run(example_input(record["channels"], record["halo"])).ravel()
    except KeyError as err:
        raise GraphError(f"{path}: an ONNX graph without this project's record ({err} missing; export it with "
                         f"test.py --export-onnx)") from None
    except Exception as err:  # onnxruntime raises its own types for unreadable or invalid graphs
        raise GraphError(f"{path}: not a loadable ONNX graph of this project ({first_line(err)})") from None
    if record.get("example_input", 1) != EXAMPLE_INPUT_VERSION:
        raise GraphError(f"{path}: exported by an older version of this project (another check input); export it "
                         f"again (test.py --export-onnx, or python -m weights.export_graphs for a shipped file)")
    if weights_sha256 and record.get("weights_sha256") != weights_sha256:
        recorded = record.get("weights_sha256")
        raise GraphError(f"{path}: " + ("records no weights file (exported with --padding)" if recorded is None
                                        else f"exported from other weights (sha256 {recorded[:12]}...) than those beside it"))
    difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not difference <= TOLERANCE:
        raise GraphError(f"{path}: does not match the network (off by {difference:.2g})")
    return graph


def ready_graph(weights: Path, scale: int) -> GraphUpscaler | None:
    """The checked graph of a weights file for `scale`, beside it or in the cache, or None when there is
    none yet. A graph beside the weights that fails its checks is reported on stderr and not used; one
    built for another scale from FSRCNN weights that do not record theirs is passed over."""
    if not installed("onnxruntime"):
        return None
    sha256 = file_sha256(weights)
    for path in (weights.with_suffix(".onnx"), cached_graph_path(sha256, scale)):
        if path.is_file():
            try:
                graph = open_graph(path, sha256)
            except GraphError as err:
                print(f"warning: {err}; not used", file=sys.stderr)
                continue
            if not (graph.takes_lr and "scale" not in graph.record["meta"] and graph.record["scale"] != scale):
                return graph
    return None
