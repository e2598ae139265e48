"""One fine-tuning run per output folder: an advisory lock on the folder itself.

Two ``medrag finetune`` runs given the same ``--output-dir`` both passed the preflight checks (the
folder was empty, or an earlier output) and wrote into it at once: the folder ended with one run's
weights beside the other run's scores and model card, both runs exited 0, and
``dimension="auto"`` chose a size from scores of another model (user tryout). A run therefore holds
an exclusive ``flock`` on the output folder from its checks to its last write, and a second run is
refused at once. The lock is taken on the folder's own descriptor, so no file is added to the model
folder; the kernel drops it when the process ends, even on SIGKILL, so ``--resume`` after a kill
never meets a stale lock. Only the main process of a multi-process (``accelerate``/``torchrun``) run
takes it, and tells the other processes whether the run may go on. Where ``flock`` does not exist
(Windows) or fails for another reason than a holder (a network file system) the run goes on
unlocked, with a warning.

Example::

    >>> import tempfile
    >>> with OutputLock(tempfile.mkdtemp()):
    ...     pass
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medrag.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["OutputLock"]


class OutputLock:
    """An exclusive, non-blocking lock on a fine-tuning run's output folder (``with OutputLock(dir):``).

    Args:
        directory: the output folder (it must exist: the preflight checks create it).
        what: how the folder is named in the error (``output_dir``: the one folder a run locks; an
            ``export_adapter`` folder is replaced whole at the end of a run, so a lock on it would
            not outlive the replacement, and two runs exporting into one folder are not refused).

    Raises:
        ConfigError: another process holds the lock (another run writes into this folder).
    """

    def __init__(self, directory: str | os.PathLike[str], what: str = "output_dir") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover (Windows)
            return self
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # a folder that cannot be opened is the preflight's to report (it writes there first)
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"{self.what} {self.directory} is being written by another fine-tuning run (another process holds "
                "its lock): two runs in one folder would mix their weights and scores. Wait for that run to end, "
                "or pass another folder") from None
        except OSError as exc:  # NFS (a directory opened read-only: EBADF), Lustre without flock (ENOSYS)...
            os.close(fd)  # not "another run holds it" (review): said, and the run goes on unlocked
            logger.warning("%s %s cannot be locked on this file system (%s): another run writing into it at the same "
                           "time would not be refused", self.what, self.directory, exc.strerror or exc)
            return self
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
