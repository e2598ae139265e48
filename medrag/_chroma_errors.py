"""Chroma's failures as :class:`~medrag.errors.MedragError` subclasses (the store and ``medrag index``).

Chroma raises its own tree (``chromadb.errors``), httpx transport errors for a lost server, and
built-in ``ValueError``/``TypeError`` for rejected requests; users catch ``MedragError`` and the CLI
prints one line, so every Chroma call of the library goes through :func:`translate_chroma_error`.
"""

from __future__ import annotations

from medrag.errors import (
    CollectionMismatchError,
    InvalidInputError,
    MedragError,
    StoreConnectionError,
    StoreError,
)


def translate_chroma_error(exc: Exception, what: str, collection: str | None = None) -> MedragError:
    """The :class:`MedragError` a Chroma failure becomes (the original is chained as the cause)."""
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
            f"could not {what}: {exc} The server's tenants and databases are made by its administrator "
            "(chromadb.AdminClient: create_tenant, create_database); check --tenant/--database, or leave them out "
            "for Chroma's defaults"
        )
    if isinstance(exc, NotFoundError):
        return CollectionMismatchError(f"could not {what}{where}: {exc} (was the collection deleted by another client?)")
    if isinstance(exc, ValueError) and "could not connect" in str(exc).lower():  # chromadb.HttpClient(...)
        return StoreConnectionError(
            f"cannot reach a Chroma server to {what}{where}: {exc} Start it (chroma run --path DIR) or check "
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
        return InvalidInputError(f"Chroma rejected the request to {what}{where}: {exc}{hint}")
    if isinstance(exc, ChromaError):
        return StoreError(f"Chroma failed to {what}{where}: {type(exc).__name__}: {exc}")
    return StoreError(f"could not {what}{where}: {type(exc).__name__}: {exc}")
