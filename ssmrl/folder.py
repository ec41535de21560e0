"""Run folders: one run at a time, and never a silent overwrite.

`run_folder_lock(out_dir)` holds an exclusive `fcntl.flock` on `out_dir/.ssmrl.lock` for a run's life. The kernel
releases it however the process ends (a crash or SIGKILL included); the file names its holder (pid, host, start
time), so a second run is refused naming the first, and a lock left by a process that has died is reported and
taken over. `claim_run_folder` refuses a folder that holds anything unless the run resumes it or overwrites it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ssmrl.rl.paths import reason, writable_folder

LOCK_NAME = ".ssmrl.lock"
RUN_MARKERS = ("checkpoints", "metrics.csv")
"""With `config.yaml`, one of these marks a folder written by `ssmrl train` (only such a folder is emptied by
overwrite)."""

_held: dict[Path, list] = {}  # resolved folder -> [lock file descriptor, nesting depth]


class RunFolderBusy(FileExistsError):
    """Another live process holds the run folder's lock."""


@contextlib.contextmanager
def run_folder_lock(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Holds the exclusive lock of run folder `out_dir` (created if needed) while the block runs; re-entrant in
    one process. `RunFolderBusy` naming the holder when another process has it; ValueError if the folder cannot be
    written."""
    path = writable_folder(out_dir).resolve()
    if path in _held:
        _held[path][1] += 1
        try:
            yield path
        finally:
            _held[path][1] -= 1
        return
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ValueError(f"out_dir {str(path)!r}: cannot create its lock file: {reason(err)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd)) or "another process"
            raise RunFolderBusy(f"out_dir {str(path)!r} is in use by {holder}; wait for that run to end or choose "
                                f"another out_dir") from None
        previous = _read(fd)
        if previous and previous.get("pid") != os.getpid() and _alive(previous):  # flock not enforced (some NFS)
            raise RunFolderBusy(f"out_dir {str(path)!r} is in use by {_describe(previous)}; wait for that run to end "
                                f"or choose another out_dir (remove {str(lock)!r} if that process is not ssmrl)")
        if previous:
            print(f"ssmrl: note: {str(lock)!r} was left by {_describe(previous)}, which ended without releasing it; "
                  "taking it over", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _held[path] = [fd, 1]
    try:
        yield path
    finally:
        del _held[path]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # an empty lock file: ended cleanly
        os.close(fd)  # releases the flock


def claim_run_folder(path: str | os.PathLike, resume: bool, overwrite: bool) -> None:
    """Checks (under the lock) that a run may write to `path`: it must be empty unless `resume` (continue the run
    there) or `overwrite` (empty it first; only a folder written by `ssmrl train`). FileExistsError naming what is
    there otherwise."""
    path = Path(path)
    if resume and overwrite:
        raise ValueError("resume=true and overwrite=true contradict each other; pass one of them")
    entries = sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)
    if not entries or resume:
        return
    listing = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8 else "")
    if not overwrite:
        raise FileExistsError(f"out_dir {str(path)!r} is not empty (it holds {listing}); pass resume=true to continue "
                              "the run there or overwrite=true to replace it, or choose another out_dir")
    if not ((path / "config.yaml").is_file() and any((path / marker).exists() for marker in RUN_MARKERS)):
        raise FileExistsError(f"overwrite=true only empties a folder written by `ssmrl train` (config.yaml with "
                              f"{' or '.join(RUN_MARKERS)}); {str(path)!r} holds {listing}: choose another out_dir")
    for name in entries:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    print(f"ssmrl: overwrite=true: removed {listing} from {str(path)!r}", file=sys.stderr)


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "ticks": _start_ticks(os.getpid())}


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return ""
    return f"process {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"


def _alive(holder: dict) -> bool:
    """Whether the holder's process still runs (only knowable on this host: os.kill(pid, 0) and its start time)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    ticks = _start_ticks(pid)
    return ticks is None or holder.get("ticks") in (None, ticks)  # a recycled pid has another start time


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None
