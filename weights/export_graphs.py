"""Write the ONNX graph beside every shipped weights file (weights/<name>.onnx), with the record that makes
it that file's ready graph (graphs.py), and its sha256 in weights/manifest.json. test.py then runs the
shipped networks on ONNX Runtime without importing PyTorch (after auto's one measurement per network
and machine) and never has to export them.
weights/publish.py does the same for the file it publishes.

    python -m weights.export_graphs                      # every file in the manifest
    python -m weights.export_graphs fsrcnn_x3.pth        # some
"""
from __future__ import annotations

import argparse

import cli
from hub import WEIGHTS_DIR, file_sha256, read_manifest, write_manifest
from inference import write_graph_beside
from models import WeightsError


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="weights files in weights/ (default: all in the manifest)")
    return parser


@cli.one_line_errors(WeightsError, ValueError)
def main() -> None:
    args = build_parser().parse_args()
    manifest = read_manifest()
    for name in args.names or list(manifest):
        if name not in manifest:
            raise ValueError(f"{name}: not in weights/manifest.json")
        graph = write_graph_beside(WEIGHTS_DIR / name)
        manifest[name]["graph_sha256"] = file_sha256(graph)
        write_manifest(manifest)  # after each graph: a failure later leaves no stale checksum
        print(f"wrote weights/{graph.name}")


if __name__ == "__main__":
    main()
