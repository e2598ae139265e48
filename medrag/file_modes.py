"""File modes of what medrag writes for other users to read (a cache built by root in a Docker
image, read by the app's user; an index file beside a shared store).

``tempfile`` makes folders 0700 and files 0600 whatever the umask, so medrag's atomic writes
(written to a temporary name, then renamed) give what they write the modes the umask asks for.

Example::

    >>> import os, stat, tempfile
    >>> fd, name = tempfile.mkstemp(); os.close(fd)
    >>> old = os.umask(0o022); apply_umask(Path(name)); _ = os.umask(old)
    >>> oct(stat.S_IMODE(os.stat(name).st_mode)), os.remove(name)
    ('0o644', None)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask: from ``/proc/self/status`` on Linux, else by setting it and setting it
    back (the only portable way to read it; under a lock, so that two medrag threads never see 0o022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def apply_umask(path: Path) -> None:
    """Give ``path`` (a file, or a folder and everything in it, links aside) the umask's modes."""
    mask = current_umask()
    for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
