"""The one place where sclibra writes files and folders.

* :func:`atomic_file` / :func:`write_bytes` / :func:`write_text` / :func:`write_json`: a file is
  written beside its destination (``.NAME.tmp-XXXX``), flushed to disk (``fsync``) and renamed
  into place, so a reader sees the old file or the new one, never half a file.
* :func:`replace_dir`: a folder (a saved model, a demo output) is built beside its destination and
  swapped in. Replacing an existing folder takes two renames; a journal file
  (``.NAME.replace.json``) written before the first one lets the next save or load of that path
  finish a replace a crash interrupted (:func:`recover_dir`). An existing folder is replaced only
  when every entry in it is one this writer may remove (``owned``): sclibra never deletes files it
  did not write.
* :func:`check_output_location`: the CLI checks where it will write before any work.
* :class:`FolderLock`: one process at a time per output folder (``sclibra tune``).

Disk-full and permission errors become a :class:`~sclibra.SclibraError` naming the destination.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ._errors import LockedError, OutputError, SclibraError, format_names
from ._settings import logger

#: marker file inside a temporary folder of :func:`replace_dir` (who is writing it)
PARTIAL_MARKER = ".sclibra-partial"
#: chunk size of :func:`write_bytes`
_CHUNK = 1 << 22


# ----------------------------------------------------------------------------------------------
# low level
# ----------------------------------------------------------------------------------------------
def fsync_dir(path) -> None:
    """Make renames and new entries in folder ``path`` durable (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _io_error(err: OSError, dest) -> SclibraError:
    """A readable error for an OS error met while writing ``dest``."""
    if err.errno == errno.ENOSPC:
        return OutputError(f"no space left on device while saving to {dest}")
    if err.errno == errno.EDQUOT:
        return OutputError(f"disk quota exceeded while saving to {dest}")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write to {dest}: {err.strerror or 'permission denied'}")
    return OutputError(f"cannot write {dest}: {err.strerror or err}")


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:_CHUNK])
        view = view[n:]


def write_file(path, data: bytes) -> None:
    """Write ``data`` to file ``path`` and fsync it (not atomic: for files inside a temporary
    folder of :func:`replace_dir`).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _default_mode())
    try:
        _write_fd(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _owner() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "started_ts": time.time(),
    }


#: destinations this process is writing right now (their journals and temporaries are not stale)
_ACTIVE: set[str] = set()


def _owner_is_dead(info: dict, target: Path | None = None) -> bool:
    """True when ``info`` names a process on this host that no longer runs (or this process,
    when it is not writing ``target`` any more: an earlier save that failed half-way).
    """
    if not isinstance(info, dict) or not info:
        return True  # torn or empty: its writer died while writing it
    if info.get("host") != socket.gethostname():
        return False  # cannot tell: never take over another machine's work
    pid = info.get("pid")
    if pid == os.getpid():
        return target is not None and str(Path(target).absolute()) not in _ACTIVE
    return not isinstance(pid, int) or not _is_pid_alive(pid)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_file(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; on success, fsync it and rename it to ``path``.

    Whatever writes the temporary file (``to_csv``, ``write_h5ad``, ``savefig``) never leaves a
    half-written ``path``; on any error the temporary file is removed. The file gets the usual
    permissions (``0o666`` minus the umask). The temporary name ends like ``path`` (``suffix``)
    for writers that look at the extension.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise _io_error(err, path) from None
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        raise _io_error(err, path) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        write_file(Path(tmp), data)
    return path


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, **kwargs) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    kwargs.setdefault("indent", 1)
    return write_text(path, json.dumps(obj, **kwargs))


# ----------------------------------------------------------------------------------------------
# folders
# ----------------------------------------------------------------------------------------------
def _journal(path: Path) -> Path:
    return path.with_name(f".{path.name}.replace.json")


def _ours(folder: Path) -> bool:
    """Whether a hidden temporary folder was made by :func:`replace_dir` (its marker inside)."""
    return (folder / PARTIAL_MARKER).is_file()


def recover_dir(path, *, prefer: str = "forward") -> str | None:
    """Finish or undo a replace of folder ``path`` that a crash interrupted; clean stale temps.

    A journal ``.NAME.replace.json`` names the complete new folder and the folder the old one
    was moved to. Without a folder at ``path``, the new one is moved in (``prefer="forward"``,
    after a crash) or the old one moved back (``prefer="back"``, after an error in this
    process). Returns what was done (``"rolled forward"``, ``"rolled back"``, ``"cleaned"``) or
    ``None``. Work of a process that still runs (same host) is left alone; only folders carrying
    this writer's marker are removed.
    """
    try:
        return _recover(Path(path), prefer)
    except OSError as err:  # e.g. a read-only copy of a model: loading must still work
        logger.warning("%s: could not finish an interrupted save (%s)", path, err)
        return None


def _recover(path: Path, prefer: str) -> str | None:
    parent = path.parent
    if not parent.is_dir():
        return None
    done = None
    journal = _journal(path)
    if journal.exists():
        info = _read_json(journal)
        if isinstance(info, dict) and not _owner_is_dead(info, path):
            return None  # a save in progress
        info = info if isinstance(info, dict) else {}
        new = parent / str(info.get("new") or "\0")
        old = parent / str(info.get("old") or "\0")
        new_ok = new.is_dir() and _ours(new)
        old_ok = old.is_dir() and _ours(old)
        if not path.exists():
            if new_ok and (prefer == "forward" or not (old_ok and (old / path.name).is_dir())):
                os.replace(new, path)  # complete: the journal is written after it
                (path / PARTIAL_MARKER).unlink(missing_ok=True)
                done = "rolled forward"
            elif old_ok and (old / path.name).is_dir():
                os.replace(old / path.name, path)
                done = "rolled back"
        elif new_ok:
            done = "rolled back"  # the swap never started: the old folder is in place
        for folder, ok in ((new, new_ok), (old, old_ok)):
            if ok and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
        journal.unlink(missing_ok=True)
        fsync_dir(parent)
        logger.warning(
            "%s: found an interrupted save (process %s on %s) and %s it",
            path,
            info.get("pid"),
            info.get("host"),
            done or "cleaned up after",
        )
        done = done or "cleaned"
    # stale temporaries of killed saves: only ours, only of processes that no longer write
    for prefix in (f".{path.name}.tmp-", f".{path.name}.old-"):
        for p in parent.glob(f"{glob_escape(prefix)}*"):
            if not p.is_dir() or not _ours(p):
                continue
            if not _owner_is_dead(_read_json(p / PARTIAL_MARKER) or {}, path):
                continue
            shutil.rmtree(p, ignore_errors=True)
            logger.info("removed %s, left by an interrupted save", p)
            done = done or "cleaned"
    return done


def glob_escape(s: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in s)


def foreign_entries(folder: Path, allowed: Iterable[str]) -> list[str]:
    """Names in ``folder`` that are not in ``allowed`` (what a replace must not delete)."""
    allowed = set(allowed)
    return sorted(p.name for p in Path(folder).iterdir() if p.name not in allowed)


def check_replaceable(
    path,
    *,
    overwrite: bool,
    owned: Callable[[Path], list[str]] | None = None,
    what: str = "folder",
    flag: str = "overwrite=True",
) -> None:
    """Raise unless folder ``path`` is absent, or may be replaced (``overwrite`` and nothing in it
    that ``owned`` names as foreign; see :func:`replace_dir`).
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(f"{path} already exists; pass {flag} to replace it")
    if not path.is_dir():
        raise SclibraError(f"{path} exists and is not a folder; refusing to replace it")
    foreign = owned(path) if owned is not None else foreign_entries(path, ())
    if foreign:
        raise SclibraError(
            f"{path} is not a sclibra {what}: it holds {format_names(foreign, 8)}, which "
            f"{flag} would delete; choose another folder or remove them yourself"
        )


def replace_dir(
    path,
    write: Callable[[Path], None],
    *,
    overwrite: bool = False,
    owned: Callable[[Path], list[str]] | None = None,
    what: str = "folder",
) -> Path:
    """Build folder ``path`` with ``write(tmp)`` beside it and move it into place.

    Parameters
    ----------
    path
        Destination folder.
    write
        Fills the (empty) temporary folder it is given; its files are fsynced afterwards.
    overwrite
        Replace an existing ``path``. Only done when ``owned(path)`` returns no names: it returns
        the entries of ``path`` that this writer did not create (they would be lost).
    owned
        See ``overwrite``; ``None`` refuses any non-empty existing folder.
    what
        Name of the thing written, for messages (``"model"``).
    """
    path = Path(path)
    recover_dir(path)
    check_replaceable(path, overwrite=overwrite, owned=owned, what=what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as err:
        raise _io_error(err, path) from None
    old = None
    journal = _journal(path)
    key = str(path.absolute())
    _ACTIVE.add(key)
    try:
        write_file(tmp / PARTIAL_MARKER, json.dumps(_owner()).encode())
        write(tmp)
        for p in tmp.rglob("*"):
            if p.is_file() and p.name != PARTIAL_MARKER:
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            elif p.is_dir():
                fsync_dir(p)
        fsync_dir(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            write_file(old / PARTIAL_MARKER, json.dumps(_owner()).encode())
            write_json(journal, {**_owner(), "target": path.name, "new": tmp.name, "old": old.name})
            os.replace(path, old / path.name)
            fsync_dir(path.parent)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            journal.unlink(missing_ok=True)
        else:
            os.replace(tmp, path)
        (path / PARTIAL_MARKER).unlink(missing_ok=True)
        fsync_dir(path)
        fsync_dir(path.parent)
    except OSError as err:
        raise _io_error(err, path) from None
    finally:
        _ACTIVE.discard(key)
        if journal.exists():
            # interrupted between the two renames: finish now if we can, else the next save or
            # load of this path does (the journal names both folders)
            with contextlib.suppress(Exception):
                recover_dir(path, prefer="back")
        if tmp.exists() and not journal.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not journal.exists():
            shutil.rmtree(old, ignore_errors=True)
    return path


# ----------------------------------------------------------------------------------------------
# checks before work
# ----------------------------------------------------------------------------------------------
def check_output_location(path, *, overwrite: bool = False, folder: bool = False) -> Path:
    """Check that ``path`` can be written, before any work: raise :class:`OutputError` if not.

    The nearest existing ancestor must be a writable folder (not a file, not read-only); an
    existing ``path`` is refused without ``overwrite`` (an existing *folder* is fine when
    ``folder=True``: its owner decides what may be replaced).
    """
    path = Path(path).expanduser()
    if path.exists():
        if folder:
            if not path.is_dir():
                raise OutputError(f"{path} exists and is not a folder")
        elif not overwrite:
            raise FileExistsError(f"{path} already exists; use --overwrite to replace it")
        elif path.is_dir() and not folder:
            raise OutputError(f"{path} is a folder; give a file name")
    anc = path.parent
    while not anc.exists():
        if anc.is_symlink() or anc == anc.parent:
            break
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise OutputError(f"cannot write {path}: {anc} is a file, not a folder")
    # a folder output is written into (a search) or replaced from beside it (a model): check both
    for target in [anc, path] if (folder and path.is_dir()) else [anc]:
        _probe(target, path)
    return path


def _probe(target: Path, path: Path) -> None:
    """Raise :class:`OutputError` unless a block can be written into folder ``target``."""
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {target} is not writable")
    probe = None
    try:  # read-only mounts pass os.access for root, a full disk takes empty files: write a block
        fd, probe = tempfile.mkstemp(prefix=".sclibra-probe-", dir=target)
        try:
            _write_fd(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise _io_error(err, path) from None
    finally:
        if probe is not None:
            with contextlib.suppress(OSError):
                os.unlink(probe)


# ----------------------------------------------------------------------------------------------
# lock
# ----------------------------------------------------------------------------------------------
class FolderLock:
    """An exclusive lock on an output folder, held by one process (``.sclibra.lock`` inside).

    The lock file names its holder (pid, host, start time). A lock left by a process that no
    longer runs on this host is taken over, with a warning.
    """

    NAME = ".sclibra.lock"

    def __init__(self, folder, what: str = "folder"):
        self.folder = Path(folder)
        self.file = self.folder / self.NAME
        self.what = what
        self._held = False

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _default_mode())
            except FileExistsError:
                info = _read_json(self.file)
                if not isinstance(info, dict):
                    # being written right now, or torn: give the writer a moment
                    time.sleep(0.2)
                    info = _read_json(self.file)
                    info = info if isinstance(info, dict) else {}
                    with contextlib.suppress(OSError):
                        if not info and time.time() - self.file.stat().st_mtime < 5:
                            continue
                if _owner_is_dead(info):
                    logger.warning(
                        "%s: taking over a stale lock of process %s on %s (started %s), "
                        "which no longer runs",
                        self.folder,
                        info.get("pid"),
                        info.get("host"),
                        info.get("started"),
                    )
                    if (_read_json(self.file) or {}) == info:  # not re-taken meanwhile
                        self.file.unlink(missing_ok=True)
                    continue
                raise LockedError(
                    f"{self.folder} is in use by another {self.what}: process {info.get('pid')} "
                    f"on {info.get('host')}, started {info.get('started')}; wait for it to finish "
                    "or choose another folder"
                ) from None
            except OSError as err:
                raise _io_error(err, self.file) from None
            try:
                _write_fd(fd, json.dumps(_owner()).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._held = True
            return self
        raise LockedError(f"{self.folder}: could not take the lock {self.file}")

    def release(self) -> None:
        if self._held:
            info = _read_json(self.file) or {}
            if info.get("pid") == os.getpid():
                self.file.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = [
    "OutputError",
    "LockedError",
    "FolderLock",
    "atomic_file",
    "write_bytes",
    "write_text",
    "write_json",
    "replace_dir",
    "recover_dir",
    "foreign_entries",
    "check_output_location",
    "check_replaceable",
    "fsync_dir",
    "write_file",
]
