"""One process per embedded Chroma persist directory: an advisory lock file.

Chroma's embedded client (``chromadb.PersistentClient``) keeps its HNSW index in the memory of
each process and is not multi-process safe: a second process on the same folder sees new
records through ``count``/``get`` but searches a stale index (and may raise ``Error finding
id``). :class:`MatryoshkaChroma` therefore takes an exclusive ``flock`` on
``<persist_directory>/medrag.lock`` when it opens an embedded store; a second process gets a
warning when it opens the folder and :class:`~medrag.errors.StoreLockedError` when it tries to
write. Several stores in one process share the lock (a reference count). The lock is advisory
(processes that do not use medrag ignore it) and is released by the kernel when the holding
process dies, even on SIGKILL, so there is never a stale lock to delete. A Chroma server
(``chroma run --path DIR``) is the multi-process deployment.

Example::

    >>> import tempfile
    >>> lock = DirectoryLock(tempfile.mkdtemp())  # a persist folder, e.g. "./chroma"
    >>> lock.acquire()
    True
    >>> lock.release()
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medrag.errors import StoreError, StoreLockedError

logger = logging.getLogger(__name__)

#: Name of the lock file inside a persist directory.
LOCK_NAME = "medrag.lock"

_GUARD = threading.Lock()
#: realpath -> [fd, reference count, pid that took it]
_HELD: dict[str, list[int]] = {}


class WriteGuard:
    """A re-entrant lock over a store's writes (``with guard:``), and how many writes hold it
    between their generation bump and their commit (``in_flight``): a search that runs inside a
    write on the same thread (a callback) re-enters the lock, and must not take the records it
    reads for the bumped generation's."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.in_flight = 0

    def __enter__(self) -> "WriteGuard":
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


_WRITE_LOCKS: dict[str, WriteGuard] = {}


def locked_error(directory: str | os.PathLike[str], holder: str) -> StoreLockedError:
    """The error for a write refused because process ``holder`` has ``directory`` open."""
    return StoreLockedError(
        f"another process (pid {holder}) has the embedded Chroma store {directory} open; nothing was written. "
        "Chroma's embedded client is not multi-process safe (that process would not see these writes, nor this "
        f"one its writes). Stop it, or run a Chroma server (chroma run --path {directory}) and connect every "
        "process with chromadb.HttpClient (medrag index / search: --host, --port); once a server serves the "
        "folder, no process may open the folder itself (the server does not take this lock).")


def refuse_if_held_elsewhere(directory: str | os.PathLike[str]) -> None:
    """Raise :func:`locked_error` when another process holds ``directory``'s lock; creates nothing
    (a command checks this before loading a model, for a folder that may not exist)."""
    holder = DirectoryLock(directory).held_elsewhere()
    if holder is not None:
        raise locked_error(Path(directory).resolve(), holder)


def held_in_this_process(directory: str | os.PathLike[str]) -> bool:
    """Whether a store of this process holds ``directory``'s lock (then no other medrag process writes there)."""
    with _GUARD:  # a forked child inherits the table, not the lock
        entry = _HELD.get(os.path.realpath(directory))
        return entry is not None and entry[2] == os.getpid()


def folder_write_lock(directory: str | os.PathLike[str]) -> WriteGuard:
    """The lock that serialises this process's writes to one persist directory.

    Every store of the process on that folder shares it (threads, or two stores opened on the same
    folder), so that a write's steps (generation bump, copy beside the folder, Chroma upsert,
    stamp) never interleave with another write's: otherwise the copy could end holding one
    write's text and Chroma the other's. Other processes cannot write (the file lock above).
    """
    key = os.path.realpath(directory)
    with _GUARD:
        return _WRITE_LOCKS.setdefault(key, WriteGuard())


@contextmanager
def opening_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder itself (made if missing) while Chroma opens it: two
    processes creating one new store at once both ran Chroma's table creation, and one failed with
    "table collections already exists" (user tryout: two ``medrag demo`` started together). Blocks
    until the other process's open is done (a fraction of a second); no file is added to the folder.
    A no-op where ``flock`` does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class DirectoryLock:
    """An exclusive, process-wide, reference-counted advisory lock on one persist directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._key = os.path.realpath(self.directory)
        self._mine = False

    @property
    def held(self) -> bool:
        """Whether this object holds (a reference to) the lock."""
        return self._mine

    def acquire(self) -> bool:
        """Take the lock (or a reference to this process's); False when another process holds it.

        Raises:
            StoreError: the lock file cannot be opened (a read-only folder or file, a folder in its place).
        """
        if self._mine:
            return True
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the documentation's warning is all there is
            self._mine = True
            return True
        with _GUARD:
            entry = _HELD.get(self._key)
            if entry is not None and entry[2] == os.getpid():
                entry[1] += 1
                self._mine = True
                return True
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # a raw PermissionError / IsADirectoryError said nothing of what to do
                raise StoreError(
                    f"cannot open the store's lock file {self.path} ({exc.strerror or exc}): medrag takes it before "
                    "writing to the folder. Make the folder and that file writable by this user (if it is not a "
                    "plain file, remove it: it holds no data), or copy the store to a writable folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _HELD[self._key] = [fd, 1, os.getpid()]
            self._mine = True
            return True

    def release(self) -> None:
        """Drop this object's reference; the file lock goes with the process's last one."""
        if not self._mine:
            return
        self._mine = False
        with _GUARD:
            entry = _HELD.get(self._key)
            if entry is None or entry[2] != os.getpid():
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del _HELD[self._key]
                os.close(entry[0])  # closing the descriptor releases the flock

    def held_elsewhere(self) -> str | None:
        """The pid of another process holding the lock (``"unknown"`` if unreadable), or None;
        creates nothing (a command checks this before loading a model, for a folder that may not exist)."""
        if self._mine or not self.path.is_file():
            return None
        try:
            import fcntl
        except ImportError:
            return None
        with _GUARD:
            entry = _HELD.get(self._key)
            if entry is not None and entry[2] == os.getpid():
                return None  # this process holds it
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return self.holder()
            finally:
                os.close(fd)  # also releases the probe's lock
        return None

    def holder(self) -> str:
        """The pid written by the process holding the lock (``"unknown"`` if unreadable)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"
