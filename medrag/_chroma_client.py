"""What the store needs to know of a Chroma client: embedded or server, its folder, its address.

Small readers of a ``chromadb`` client's settings and collection configuration, which the store,
the repair and the commands share; none of them makes a request to a server. ``_empty`` and
``_fork_error`` hold two workarounds of Chroma's embedded client (a deleted collection's list-valued
metadata left behind; a forked process's cached client that hangs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from medrag.errors import StoreError

if TYPE_CHECKING:
    import chromadb


def _empty(collection: "chromadb.Collection", page: int) -> None:
    """Delete every record of ``collection``, ``page`` ids at a time, before the collection itself:
    chromadb 1.5.9 leaves a deleted collection's list-valued metadata behind, and the records of a
    collection made after it came back holding those keys (a phantom ``tags`` that filters matched)."""
    while True:
        ids = collection.get(include=[], limit=page)["ids"]
        if not ids:
            return
        collection.delete(ids=ids)


def _fork_error(what: str) -> StoreError:
    return StoreError(
        f"{what}: Chroma's embedded client does not work in a forked process (its calls hang). Open the store in "
        "each worker process started afresh (gunicorn: without --preload; multiprocessing: the 'spawn' start "
        "method, multiprocessing.get_context('spawn')), or run a Chroma server (chroma run --path DIR) and have "
        "each worker connect to it (chromadb.HttpClient; medrag search/index: --host, --port)")


def _is_local_client(client: Any) -> bool:
    """Whether ``client`` is an embedded Chroma client (persistent or in memory), not a server's."""
    try:
        return "rust" in str(getattr(client.get_settings(), "chroma_api_impl", "")).lower()
    except Exception:  # noqa: BLE001 - a client-like object without settings: treated as local (guarded)
        return True


def _real_folder(path: str | os.PathLike[str]) -> str:
    """A folder path as the file system resolves it (links followed, absolute). ``~`` is not expanded,
    as neither Chroma's ``PersistentClient`` nor the store expands it: ``"~/db"`` is a folder named
    ``~`` in the working folder to both (review)."""
    return os.path.realpath(os.fspath(path))


def _hnsw_settings(collection: Any) -> dict[str, Any]:
    """A collection's recorded HNSW settings (``space``, ``sync_threshold``...), read from its raw
    configuration: ``collection.configuration`` warns "legacy embedding function config"
    (DeprecationWarning) for every collection made without an embedding function, as medrag's are,
    and that warning reached users' test output at every open (user tryout)."""
    raw = getattr(collection, "configuration_json", None)
    if raw is None:  # a client without it (an older chromadb, a fake)
        raw = getattr(collection, "configuration", None)
    return dict((raw or {}).get("hnsw") or {})


def _filter_keys(where: Any) -> Iterator[str]:
    """The metadata keys and operators a Chroma filter names (for a log line without its values)."""
    if isinstance(where, dict):
        for key, value in where.items():
            yield str(key)
            yield from _filter_keys(value)
    elif isinstance(where, list):
        for item in where:
            yield from _filter_keys(item)


def _persist_directory(client: Any) -> str | None:
    """The folder of an embedded persistent client; None for servers and in-memory clients."""
    try:
        settings = client.get_settings()
    except Exception:
        return None
    if not getattr(settings, "is_persistent", False) or "rust" not in str(getattr(settings, "chroma_api_impl", "")).lower():
        return None
    return getattr(settings, "persist_directory", None) or None


def _server_address(client: Any) -> str:
    """``http(s)://host:port`` of a server's client, from its settings (no request); its type's name otherwise."""
    try:
        settings = client.get_settings()
        host, port = settings.chroma_server_host, settings.chroma_server_http_port
    except Exception:
        return type(client).__name__
    if not host:
        return type(client).__name__
    scheme = "https" if getattr(settings, "chroma_server_ssl_enabled", False) else "http"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"
