"""Reading the user's input files safely, and writing the driver's own files atomically.

Every input the driver opens (pipeline config, label map, checkpoint index and shards, the
checkpoint state file, TFRecords) goes through `open_input`: a named pipe (FIFO) given as a
config would otherwise block `open()` forever, and a directory or a device would fail later
with a less helpful error. It opens with O_NONBLOCK, so a FIFO cannot block, and then checks
on the open descriptor that it is a regular file (no race between the check and the open).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile


class InputError(OSError):
    """An input path is not a readable regular file. `reason` says why in a few words."""

    def __init__(self, path: str, reason: str, errno_: int | None = None):
        super().__init__(errno_ or errno.EINVAL, reason, path)
        self.path, self.reason = path, reason


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def _reason(error: OSError) -> str:
    return {
        errno.ENOENT: "does not exist",
        errno.EACCES: "cannot be read (permission denied)",
        errno.EPERM: "cannot be read (permission denied)",
        errno.ELOOP: "is a symbolic link loop",
        errno.ENOTDIR: "has a file where a folder should be in its path",
        errno.ENAMETOOLONG: "is too long a path",
        errno.EISDIR: "is a directory, not a file",
    }.get(error.errno, f"cannot be read ({error.strerror or error})")


def windows_hint(path: str) -> str:
    """' (a Windows path; ...)' when that is why a path cannot exist on this system."""
    if os.sep == "/" and ("\\" in path or (len(path) > 1 and path[1] == ":")):
        return " (a Windows path; on Linux use forward slashes and the local location)"
    return ""


def problem(path: str) -> str | None:
    """Why `path` cannot be read as a regular file (None when it can). Never blocks."""
    try:
        with open_input(path):
            return None
    except InputError as e:
        return e.reason


def open_input(path: str, mode: str = "rb", encoding: str | None = None):
    """Opens an input file for reading; raises InputError unless it is a readable regular file.

    Text mode decodes UTF-8 and skips a leading byte-order mark (editors on Windows add one).
    """
    if "\0" in path:
        raise InputError(path, "contains a NUL byte")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except ValueError:
        raise InputError(path, "is not a valid path") from None
    except OSError as e:
        raise InputError(path, _reason(e), e.errno) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(path, f"is {_kind(info.st_mode)}, not a file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    if "b" in mode:
        return os.fdopen(fd, "rb")
    return os.fdopen(fd, "r", encoding=encoding or "utf-8-sig")


def read_text(path: str) -> str:
    """The text of an input file (UTF-8, BOM skipped); InputError when it is not readable text."""
    with open_input(path, "r") as f:
        try:
            return f.read()
        except UnicodeDecodeError as e:
            raise InputError(
                path, f"is not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r})"
            ) from None
        except OSError as e:
            raise InputError(path, _reason(e), e.errno) from None


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same existing file (False when either is missing)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.abspath(a) == os.path.abspath(b)


def writable_dir_problem(path: str) -> str | None:
    """Why files cannot be created in folder `path`, creating it if needed (None: they can).

    Reads only: walks up to the nearest existing folder and asks the OS (access(2) also
    answers EROFS for a read-only file system).
    """
    if not path:
        return "is empty"
    if "\0" in path:
        return "contains a NUL byte"
    current = os.path.abspath(path)
    while True:
        try:
            info = os.stat(current)
        except (FileNotFoundError, NotADirectoryError):  # the latter: a file on the way
            parent = os.path.dirname(current)
            if parent == current:
                return "has no existing parent folder"
            current = parent
            continue
        except OSError as e:
            where = "" if current == os.path.abspath(path) else f" ({current})"
            return f"{_reason(e)}{where}"
        if not stat.S_ISDIR(info.st_mode):
            if current == os.path.abspath(path):
                return f"is {_kind(info.st_mode)}, not a folder"
            return f"cannot be created: {current} is {_kind(info.st_mode)}"
        if not os.access(current, os.W_OK | os.X_OK):
            where = "" if current == os.path.abspath(path) else f" (its existing parent {current})"
            return f"is not writable{where}"
        return None


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` so that readers never see a partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def human_size(n: int) -> str:
    """A byte count as people read it (decimal units, as `df -H` and file managers show)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale / 10:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


def free_bytes(path: str) -> int | None:
    """Free bytes on the file system that holds (or will hold) `path`, None when unknown.

    A path that does not exist yet is measured at its nearest existing folder.
    """
    import shutil

    folder = os.path.abspath(path)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def report_target_problem(path: str) -> str | None:
    """Why a JSON report cannot be written at `path` (None when it can).

    A report replaces the file it names, so an existing file must be an earlier report (a JSON
    document): anything else is someone's input, a config or a label map, and is refused.
    """
    import json

    if os.path.isdir(path):
        return "is a folder; name a file, e.g. DIR/report.json"
    if os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            return _reason(e)
        if not stat.S_ISREG(mode):
            return f"is {_kind(mode)}, not a file"
        try:
            with open(path, "rb") as f:
                text = f.read(1 << 24)
            if text.strip():  # an empty file holds nothing to lose
                json.loads(text)
        except (OSError, ValueError):
            return "exists and is not a JSON report: writing the report would replace it"
    problem = writable_dir_problem(os.path.dirname(os.path.abspath(path)))
    return f"cannot be written: its folder {problem}" if problem else None
