"""files.py: atomic writes (temporary name, fsync, rename) and locks."""
from __future__ import annotations

import errno
import os

import pytest

import files
from files import LockedError, WriteError, atomic_write, hold_lock, write_text


def test_a_write_reaches_the_disk_before_its_name_says_it_is_complete(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(a), str(b))) or real_replace(a, b))
    target = tmp_path / "out.json"
    target.write_text("old")
    with atomic_write(target, keep_previous=True) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing replaced while the new content is being written
    assert target.read_text() == "new" and (tmp_path / "previous-out.json").read_text() == "old"
    assert events[0] == ("fsync", str(tmp))  # the new file is on disk first,
    assert events[1] == ("replace", str(target), str(tmp_path / "previous-out.json"))  # then the old one steps aside,
    assert events[2] == ("replace", str(tmp), str(target))  # the new one takes its name,
    assert events[3] == ("fsync", str(tmp_path))  # and the rename itself is made durable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "previous-out.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(WriteError, match=r"cannot write .*out\.txt: no space left on device"):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(WriteError, match="cannot write .*out.txt: PytorchStreamWriter failed"):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("[enforce fail at inline_container.cc]\nPytorchStreamWriter failed writing file")
    with pytest.raises(KeyError):  # not a write failure: passed on as it is, but cleaned up all the same
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise KeyError("bug")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_errors_name_the_path_and_the_reason(tmp_path):
    with pytest.raises(WriteError, match=r"cannot write .*missing/x\.txt: no such file or directory"):
        write_text(tmp_path / "missing" / "x.txt", "x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WriteError, match=r"cannot create .*file/sub: (file exists|not a directory)"):
        files.make_folder(blocker / "sub")
    with pytest.raises(WriteError, match="cannot write in"):
        files.check_writable(tmp_path / "nowhere")


def test_a_lock_keeps_a_second_holder_out_until_released(tmp_path):
    lock = tmp_path / ".lock"
    with hold_lock(lock, "run folder R"):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(LockedError, match=rf"run folder R is in use by another process \(pid {os.getpid()}\)"):
            with hold_lock(lock, "run folder R"):
                pass
    with hold_lock(lock, "run folder R"):  # released: free again
        pass
