"""Keep a train.py run in the training history: best.pth plus its TensorBoard scalars.

    python -m weights.archive_run runs/srcnn_x3_valid weights/training/srcnn_x3/cpu_valid

Image summaries (sample images, filters) are dropped from the event files: they are most of their size
and the history only needs the curves. last.pth is not kept (the run's schedule has ended, or a later
run continues from best.pth) unless --keep-checkpoint: a run stopped part-way, to be continued in another
session or checkout by copying the archived folder back to the run's --output-dir and resuming it there
(not in weights/training, where its new event files and checkpoints would land in the history). The
checkpoint records its patch and validation files' paths; --resume takes them at those paths or at the
same place beside the run folder (the patch file copied with it into another checkout), no others.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboardX.record_writer import RecordWriter

import cli
from files import atomic_write, make_folder


def strip_images(source: Path, dest: Path) -> None:
    """Copy an event file without its image summaries; scalars, text and run metadata stay."""
    with atomic_write(dest) as partial:
        writer = RecordWriter(str(partial))
        for record in RawEventFileLoader(str(source)).Load():
            event = event_pb2.Event.FromString(record)
            if event.HasField("summary"):
                kept = [value for value in event.summary.value if not value.HasField("image")]
                if not kept:
                    continue
                del event.summary.value[:]
                event.summary.value.extend(kept)
            writer.write(event.SerializeToString())
        writer.close()


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("run", type=Path, help="a train.py --output-dir")
    parser.add_argument("dest", type=Path, help="weights/training/<model>/<run name>")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="keep last.pth too: a copy of the archived folder can be resumed")
    return parser


def copy_file(source: Path, dest: Path) -> None:
    """A copy that is never half there (the history's files are committed)."""
    with atomic_write(dest) as tmp:
        shutil.copy2(source, tmp)


@cli.one_line_errors()
def main() -> None:
    args = build_parser().parse_args()

    best, last = args.run / "best.pth", args.run / "last.pth"
    events = sorted(args.run.glob("events.out.tfevents.*"))
    if not best.is_file() or not events:
        raise SystemExit(f"error: {args.run} has no best.pth or no event file; is it a train.py run folder?")
    if args.keep_checkpoint and not last.is_file():
        raise SystemExit(f"error: --keep-checkpoint: {args.run} has no last.pth to keep")
    make_folder(args.dest)
    copy_file(best, args.dest / best.name)
    if args.keep_checkpoint:
        copy_file(last, args.dest / last.name)
    elif (args.dest / last.name).exists():  # kept by an earlier archive of the run part-way: now out of date
        (args.dest / last.name).unlink()
    for source in events:
        strip_images(source, args.dest / source.name)
        print(f"{source} ({source.stat().st_size / 1e6:.1f} MB) -> {args.dest / source.name} "
              f"({(args.dest / source.name).stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
