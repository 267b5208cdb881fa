"""The shipped weights as a hub: their manifest (checksums and metadata, weights/manifest.json), the model
card generated from it, and the local cache (downloads.py fetches into it)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from files import write_text

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
CARD_TABLE = "<!-- table: generated from manifest.json by weights/publish.py -->"


def cache_folder() -> Path:
    """Where downloaded weights and exported ONNX graphs are kept: $SRCNN_CACHE, or ~/.cache/srcnn."""
    return Path(os.environ.get("SRCNN_CACHE", Path.home() / ".cache" / "srcnn"))


def read_manifest(path: Path = MANIFEST) -> dict:
    """{file name: metadata} of the shipped weights: model, scale, colour, benchmarks, sha256, history."""
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(manifest: dict, path: Path = MANIFEST) -> None:
    write_text(path, json.dumps(manifest, indent=1) + "\n")


def card_table(manifest: dict) -> str:
    """The model card's table of shipped files, PSNRs and checksums, as Markdown."""
    rows = ["| file | scale | trained on LR made by | Set5 PSNR (dB) | Set14 PSNR (dB) | sha256 |", "|---|---|---|---|---|---|"]
    for name, entry in manifest.items():  # each scored under the blur it was trained with
        psnr = {s: entry["benchmarks"][s]["psnr"] for s in ("Set5", "Set14")}
        blur = f"blur {entry['blur_sigma']:g}, then " if entry.get("blur_sigma") else ""
        made = "a mix of degradations" if entry.get("degradation") == "mix" else f"{blur}MATLAB bicubic"
        rows.append(f"| `{name}` | {entry['scale']} | {made} | {psnr['Set5']:.2f} | {psnr['Set14']:.2f} | "
                    f"`{entry['sha256']}` |")
    return "\n".join(rows)


def write_card(card: Path, manifest: dict) -> None:
    """Replace everything after the card's table marker with the table of `manifest`."""
    text = card.read_text()
    if CARD_TABLE not in text:
        raise ValueError(f"{card}: no {CARD_TABLE} line to put the table under")
    write_text(card, text[: text.index(CARD_TABLE) + len(CARD_TABLE)] + "\n\n" + card_table(manifest) + "\n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
