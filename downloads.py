"""Weights from a URL: fetched once into the cache (hub.cache_folder), verified against a sha256 (given, or
the manifest's), with a deadline; nothing unverified is ever left there. Its own module because its
network stack (http.client, urllib) is needed only when a URL is given."""
from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from files import atomic_write, make_folder
from hub import cache_folder, file_sha256, read_manifest
from utils import WeightsError

NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)  # not the disk's
DOWNLOAD_DEADLINE = 600.0  # seconds a whole download may take: a server trickling bytes never holds one forever
READ_TIMEOUT = 60.0  # seconds one read may wait for the server's next bytes


def download_weights(url: str, sha256: str | None = None, cache_dir: Path | None = None,
                     allow_http: bool = False, deadline: float = DOWNLOAD_DEADLINE) -> Path:
    """Fetch weights from a URL once into a cache folder, verified against a sha256.

    The checksum comes from `sha256` or, failing that, the manifest's entry for the file name (weights/manifest.json); a
    download without a known checksum, over plain http (unless allowed), with a wrong checksum, cut
    short or still running after `deadline` seconds is refused, and nothing unverified is left in the
    cache. A cached file is hashed again before each use, and fetched again when it does not match.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or (parsed.scheme == "http" and not allow_http):
        raise WeightsError(f"{url}: only https URLs are fetched (plain http needs --allow-http)")
    name = Path(parsed.path).name or "weights.pth"
    expected = (sha256 or read_manifest().get(name, {}).get("sha256") or "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise WeightsError(f"{url}: no sha256 to check the download against; pass --sha256")
    cache_dir = cache_dir or cache_folder()
    target = cache_dir / f"{expected[:12]}-{name}"
    if target.exists() and file_sha256(target) == expected:
        return target
    # a temporary name of this process's (two downloads of one file do not clobber each other), renamed
    # only once verified; a failure to write it is a files.WriteError naming the cache
    with atomic_write(make_folder(cache_dir) / target.name) as partial:
        try:
            _fetch(url, partial, name, deadline)
        except NETWORK_ERRORS as err:
            raise WeightsError(f"{url}: download failed ({err!r})") from None
        actual = file_sha256(partial)
        if actual != expected:
            raise WeightsError(f"{url}: sha256 mismatch (expected {expected}, got {actual}); not used")
    return target


def _fetch(url: str, partial: Path, name: str, deadline: float) -> None:
    """Write the body of `url` to `partial`, refusing one cut short or not done within `deadline` seconds.
    read1 returns whatever has arrived, so the clock is checked after every read of a trickling server;
    each read waits at most READ_TIMEOUT (or the deadline, if shorter) for bytes."""
    stop_at = time.monotonic() + deadline
    with urllib.request.urlopen(url, timeout=min(READ_TIMEOUT, deadline)) as response, open(partial, "wb") as out:
        size = int(response.headers.get("Content-Length") or 0)
        with tqdm(total=size or None, unit="B", unit_scale=True, desc=f"download {name}") as progress:
            for block in iter(lambda: response.read1(1 << 16), b""):
                if time.monotonic() > stop_at:
                    raise WeightsError(f"{url}: download took longer than {deadline:g} s")
                out.write(block)
                progress.update(len(block))
    if size and partial.stat().st_size != size:
        raise WeightsError(f"{url}: download cut short ({partial.stat().st_size} of {size} bytes)")
