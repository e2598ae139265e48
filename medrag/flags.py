"""The check of a public on/off argument.

A flag read from an environment variable or a configuration file arrives as a string, and every
non-empty string is true in Python: ``trust_remote_code="false"`` ran the code shipped with a model,
``skip_existing="false"`` skipped the update it was meant to write. medrag's public calls take a
flag only as ``True`` or ``False`` (numpy's ``bool_`` included), and refuse anything else by name.

Example::

    >>> from medrag.flags import check_flag
    >>> check_flag("skip_existing", False)
    False
    >>> check_flag("skip_existing", "false")
    Traceback (most recent call last):
    ...
    medrag.errors.InvalidInputError: skip_existing must be True or False, got 'false'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medrag.errors import InvalidInputError


def check_flag(name: str, value: Any, *, none: bool = False) -> bool | None:
    """``value`` as a ``bool`` (``None`` passes too when ``none``); anything else raises
    :class:`~medrag.errors.InvalidInputError` naming ``name``."""
    if value is None and none:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    allowed = "True, False or None" if none else "True or False"
    raise InvalidInputError(f"{name} must be {allowed}, got {value!r}")
