"""Chroma's failures as :class:`~medrag.errors.MedragError` subclasses (the store and ``medrag index``).

Chroma raises its own tree (``chromadb.errors``), httpx transport errors for a lost server, and
built-in ``ValueError``/``TypeError`` for rejected requests; users catch ``MedragError`` and the CLI
prints one line, so every Chroma call of the library goes through :func:`translate_chroma_error`.
"""

from __future__ import annotations

import os
import shutil

from medrag.errors import (
    CollectionMismatchError,
    InvalidInputError,
    MedragError,
    StoreConnectionError,
    StoreError,
)


#: Free bytes under which a failure of an embedded store is put down to a full disk.
LOW_DISK_BYTES = 64 * 1024 * 1024


def _full_disk(folder: str | os.PathLike[str] | None) -> int | None:
    """The free bytes of the disk holding ``folder`` when they are under :data:`LOW_DISK_BYTES`, else None."""
    if folder is None:
        return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    return free if free < LOW_DISK_BYTES else None


def translate_chroma_error(exc: Exception, what: str, collection: str | None = None,
                           folder: str | os.PathLike[str] | None = None) -> MedragError:
    """The :class:`MedragError` a Chroma failure becomes (the original is chained as the cause).

    Args:
        exc: Chroma's exception.
        what: what was being done ("search", "write records"...), for the message.
        collection: the collection's name, for the message.
        folder: an embedded store's persist directory: when its disk is (nearly) full, the error
            says so (Chroma itself said "Error in compaction", the disk named nowhere).
    """
    from chromadb.errors import ChromaError, InvalidArgumentError, NotFoundError

    where = f" (collection {collection!r})" if collection else ""
    try:
        import httpx

        transport: tuple[type[BaseException], ...] = (httpx.TransportError, ConnectionError)
    except ImportError:  # pragma: no cover - httpx comes with chromadb
        transport = (ConnectionError,)
    if isinstance(exc, transport):
        return StoreConnectionError(
            f"lost the Chroma server while trying to {what}{where}: {type(exc).__name__}: {exc}. Check that the "
            "server is running and reachable, then retry (a write re-run with the same ids completes it)"
        )
    if isinstance(exc, NotFoundError) and str(exc).startswith(("Database [", "Tenant [")):  # HttpClient(...)
        return StoreConnectionError(
            f"could not {what}: {str(exc).rstrip('. ')}. The server's tenants and databases are made by its administrator "
            "(chromadb.AdminClient: create_tenant, create_database); check --tenant/--database, or leave them out "
            "for Chroma's defaults"
        )
    if isinstance(exc, NotFoundError):
        return CollectionMismatchError(f"could not {what}{where}: {exc} (another client or store object deleted the "
                                       "collection this store had open. If it created a new one of the same name (a "
                                       "re-index), open a new MatryoshkaChroma on it; otherwise its records are gone: "
                                       "reset_collection() starts it again, empty, and they must be added again)")
    if isinstance(exc, ValueError) and "could not connect" in str(exc).lower():  # chromadb.HttpClient(...)
        return StoreConnectionError(
            f"cannot reach a Chroma server to {what}{where}: {str(exc).rstrip('. ')}. Start it (chroma run --path DIR) or check "
            "--host/--port (and --ssl: an HTTPS server needs it, an HTTP one refuses it)"
        )
    if "readonly database" in str(exc).lower():  # SQLite's "attempt to write a readonly database"
        return StoreError(
            f"could not {what}{where}: the store's files are read-only, and Chroma's embedded client writes to "
            "its folder even to read (its write-ahead log). Give this process write access to the folder, or "
            "open a writable copy of it (cp -r)"
        )
    if isinstance(exc, (InvalidArgumentError, ValueError, TypeError, UnicodeError)):
        hint = ""
        if "exactly one operator" in str(exc):  # LangChain users' most common filter mistake
            hint = (" A filter on several keys joins them with $and, e.g. {'$and': [{'source': 'cours'}, "
                    "{'year': 2024}]}; an operator takes one key: {'year': {'$gte': 2020}}")
        elif str(exc).strip().lower() == "invalid where clause":  # Chroma names neither the key nor the rule
            hint = (". A where filter is {key: value}, {key: {operator: value}} with $eq, $ne, $gt, $gte, $lt, $lte "
                    "(value a str, int, float or bool), $in or $nin (a list of them), $contains or $not_contains (a "
                    "value of a list field), or {'$and' or '$or': [filters]}; a metadata key does not start with '$'")
        return InvalidInputError(f"Chroma rejected the request to {what}{where}: {exc}{hint}")
    # a failure no branch above explains (Chroma said "Error in compaction" when the disk filled)
    free = _full_disk(folder)
    if free is not None or "database or disk is full" in str(exc).lower():
        return StoreError(
            f"could not {what}{where}: the disk holding {folder or 'the store'} is full"
            f"{f' ({free // 1024} KiB free)' if free is not None else ''} ({type(exc).__name__}: {exc}). Free "
            "space there (or move the store to a larger disk) and run the same call again: what was stored is "
            "kept, and a re-run writes only what is missing")
    if isinstance(exc, ChromaError):
        return StoreError(f"Chroma failed to {what}{where}: {type(exc).__name__}: {exc}")
    return StoreError(f"could not {what}{where}: {type(exc).__name__}: {exc}")
