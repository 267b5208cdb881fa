"""Running the repo's own scripts (preprocess.py, train.py) from another script: a child process that
gets our SIGINT/SIGTERM and is waited for, so it saves its checkpoint or closes its partial file before
it exits, instead of being killed mid-write with its parent."""
from __future__ import annotations

import signal
import subprocess


def run_to_the_end(command: list[str]) -> int:
    """The child's exit code; our SIGINT/SIGTERM is passed on to it while it runs."""
    child = subprocess.Popen(command)
    forward = lambda signum, frame: child.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
