"""``medrag search``: query a store that ``medrag index`` (or any MatryoshkaChroma) built, from the shell.

The dense funnel (64-dim HNSW, full-size rerank) by default, ``--hybrid`` for BM25 fused with it.
Without ``--model`` the store is opened with the model its collection records (``medrag:model``), so
``medrag index ... && medrag search ...`` needs no model argument twice. Nothing is created: a
missing store or collection is an error, not a new empty one.

Example::

    medrag index notices.jsonl --persist-dir ./chroma --id-field id --metadata-fields product
    medrag search "posologie du paracétamol chez l'enfant" --persist-dir ./chroma --k 5 --hybrid
    medrag search "ferritine basse" --persist-dir ./chroma --filter '{"product": "Tardyferon"}' --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrag.command import (add_store_location_arguments, check_store_location, collection_names,
                            collection_prompts, lexical_weight_argument, open_server, recorded_model, server_place,
                            store_embeddings)
from medrag.embeddings import check_utf8
from medrag.text_checks import is_blank
from medrag.errors import CollectionMismatchError, DataError, InvalidInputError
from medrag.chunking import SECTION_KEY
from medrag.sources import FOLDER_KEY
from medrag.models import check_device

if TYPE_CHECKING:
    from medrag.store import MatryoshkaChroma

logger = logging.getLogger(__name__)


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("search", help="query a store built by medrag index (dense funnel, or --hybrid with BM25)",
                       description="Print the k best passages of a MatryoshkaChroma collection for a query.")
    p.add_argument("query", help="the question; - reads the queries from stdin, one per line (the model loads "
                                 "once; with --json each object names its query); a query that starts with '-' "
                                 "goes after '--': medrag search --persist-dir DB -- \"-CRP\"")
    add_store_location_arguments(p, "folder of an embedded Chroma store")
    p.add_argument("--model", default=None,
                   help="model spec (default: the model the collection was built with, as it records it)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when available)")
    p.add_argument("--k", type=int, default=4, help="passages to print (default 4)")
    p.add_argument("--hybrid", action="store_true", help="fuse BM25 with the dense funnel (store.hybrid_search)")
    p.add_argument("--lexical-weight", type=lexical_weight_argument, default=None,
                   help="BM25's weight in the fusion with --hybrid: a number in [0, 1], or auto (a weight per "
                        "query, higher when BM25's best match holds the query's terms; default: the store's)")
    p.add_argument("--candidates", type=int, default=None, help="stage-1 candidates (default: the store's)")
    p.add_argument("--filter", default=None, help='a Chroma metadata filter as JSON, e.g. \'{"source": "a.txt"}\'')
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line (query, rank, id, score, score_kind: 'cosine' or with --hybrid "
                        "'fused', whose scale is the fusion's, text, metadata)")
    p.set_defaults(func=run_search, writes=False)


def run_search(args: argparse.Namespace) -> int:
    """Cheap checks, then the collection's recorded model, then the queries."""
    queries = _read_queries(args.query)
    # what the store would refuse after the model loaded (seconds on CPU), named as the command line has it
    from medrag.store import check_search_sizes  # the store module only for a real search

    check_search_sizes(args.k, args.candidates, k_name="--k", candidates_name="--candidates")
    if args.lexical_weight is not None and not args.hybrid:
        raise InvalidInputError("--lexical-weight is only used with --hybrid")
    if args.lexical_weight not in (None, "auto") and not 0 <= args.lexical_weight <= 1:
        raise InvalidInputError(f"--lexical-weight must be in [0, 1] (0 = dense only, 1 = BM25 only), "
                                f"got {args.lexical_weight}")
    check_store_location(args)
    where = parse_filter(args.filter)
    store = open_indexed_store(args)
    options: dict[str, Any] = {"candidates": args.candidates} if args.candidates else {}
    if args.hybrid and args.lexical_weight is not None:
        options["lexical_weight"] = args.lexical_weight
    for n, query in enumerate(queries):
        if args.hybrid:
            found = store.search_with_stages(query, k=args.k, filter=where, hybrid=True, **options)
            hits = [(hit.document, hit.fused_score) for hit in found.hits]
            label, kind = "fused score", "fused"
            if found.read_as and found.lexical_weight:  # a silent cortisol -> cortisone misled a reader of the hits
                print("note: no passage holds " + ", ".join(repr(w) for w, _ in found.read_as) + "; BM25 read "
                      + ", ".join(f"{w!r} as the indexed term {t!r}" for w, t in found.read_as)
                      + " (one edit away; the dense side searched the query as typed)"
                      + (f" [query {n + 1}]" if len(queries) > 1 else ""), file=sys.stderr)
        else:
            hits = [(d, 1.0 - dist) for d, dist in store.similarity_search_with_score(query, k=args.k,
                                                                                    filter=where, **options)]
            label, kind = "cosine", "cosine"
        if len(queries) > 1 and not args.json:
            print(f"{'' if n == 0 else chr(10)}query {n + 1}: {query}")
        for rank, (doc, score) in enumerate(hits, 1):
            if args.json:
                # score_kind: a script thresholding "score" read fused scores as cosines once --hybrid was added
                print(json.dumps({"query": query, "rank": rank, "id": doc.id, "score": round(float(score), 6),
                                  "score_kind": kind, "text": doc.page_content, "metadata": doc.metadata},
                                 ensure_ascii=False))
            else:
                text = " ".join(doc.page_content.split())
                section = doc.metadata.get(SECTION_KEY)  # whole, on its own line: cut, it could not be a --filter
                print(f"{rank:>2}. [{label} {score:.4f}] {doc.id}  {_short(doc.metadata)}\n    "
                      + (f"section: {section}\n    " if isinstance(section, str) else "")
                      + f"{text[:300]}{'...' if len(text) > 300 else ''}")
        if not hits:
            print("no result" + (f" for query {n + 1}" if len(queries) > 1 else "")
                  + (" (the filter matched nothing, or the collection is empty)" if where else
                     " (the collection is empty)"), file=sys.stderr)
    return 0


def open_indexed_store(args: argparse.Namespace) -> "MatryoshkaChroma":
    """The collection ``--collection`` of the store ``--persist-dir`` (or ``--host``), opened with the
    model it records unless ``--model`` is given; nothing is created (``medrag search`` and ``medrag
    delete``). ``args`` needs the store location arguments, ``model`` and ``device``."""
    check_device(args.device)  # before the recorded model loads: its failure is not "the model moved"
    if args.persist_dir and not (Path(args.persist_dir) / "chroma.sqlite3").is_file():
        raise DataError(f"{args.persist_dir} holds no Chroma store; build one with: medrag index SOURCE "
                        f"--persist-dir {args.persist_dir}")
    import chromadb

    from medrag._chroma_errors import translate_chroma_error
    from medrag.store import MatryoshkaChroma

    place = server_place(args) if args.host else f"the Chroma store in {args.persist_dir}"
    if args.host:
        client = open_server(args)
    else:
        try:
            client = chromadb.PersistentClient(path=str(Path(args.persist_dir).resolve()))
        except Exception as exc:
            raise translate_chroma_error(exc, f"open {place}") from exc
    names = collection_names(client, place)
    if args.collection not in names:
        raise DataError(f"no collection {args.collection!r} in this store (collections: {sorted(names) or 'none'}); "
                        "pass --collection")
    emb = store_embeddings(args, None if args.model else recorded_model(client, args.collection),
                           collection_prompts(client, args.collection))
    # coarse_dim left out: the store opens the collection at the size it recorded (--coarse-dim of the index)
    try:
        return MatryoshkaChroma(args.collection, emb, client=client, create_collection_if_not_exists=False)
    except CollectionMismatchError as exc:  # its advice is the Python API's (reindex): say the shell's too
        if not args.model or "model:" not in str(exc):
            raise
        raise CollectionMismatchError(f"{exc} From the shell: leave out --model, and the model the collection "
                                      "records is used") from None


def _read_queries(query: str) -> list[str]:
    """The query, or with ``-`` the non-blank lines of stdin; each checked as a query (before the model loads)."""
    if query == "-":
        try:
            lines = sys.stdin.read().splitlines()
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start}): convert it "
                                    "(iconv -f cp1252 -t utf-8)") from None
        if lines:
            lines[0] = lines[0].removeprefix("\ufeff")  # a file saved with a BOM (Windows tools)
        # numbered before the blank lines go: an error names the line of the file (review)
        numbered = [(n, " ".join(line.split())) for n, line in enumerate(lines, 1) if not is_blank(line)]
        if not numbered:
            raise InvalidInputError("no query on stdin (the query '-' reads one query per line from stdin)")
        where = (lambda n: f"stdin line {n}: ") if len(lines) > 1 else (lambda n: "")
    else:
        if is_blank(query):
            raise InvalidInputError("the query is empty (or only whitespace or invisible characters)")
        numbered, where = [(1, query)], (lambda n: "")
    kept = []
    for n, text in numbered:
        check_utf8(text, f"{where(n)}the query", "fix the text")
        if any(c.isalnum() for c in text):
            kept.append(text)
        elif query == "-" and len(numbered) > 1:  # one "---" line stopped a batch of queries (user tryout)
            logger.warning("%sthe query %r holds no word nor number: skipped", where(n), text)
        else:  # "?" or "-" alone: some passage was printed, exit 0 (user tryout)
            raise InvalidInputError(f"{where(n)}the query {text!r} holds no word nor number: type what to search for"
                                    + (" (a query starting with '-' goes after '--': medrag search --persist-dir DB "
                                       "-- \"-CRP\")" if text.startswith("-") and query != "-" else ""))
    if not kept:
        raise InvalidInputError("no query on stdin holds a word or a number (the query '-' reads one query per line)")
    return kept


def parse_filter(text: str | None, flag: str = "--filter") -> dict[str, Any] | None:
    """A metadata filter given as JSON on the command line (None when not given or empty)."""
    if text is None:
        return None
    check_utf8(text, flag, "fix the text")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{flag} is not valid JSON ({exc.msg}): write e.g. '{{\"source\": \"a.txt\"}}'") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value or None


def _short(metadata: dict[str, Any]) -> str:
    """The metadata without the chunk bookkeeping, on one short line: the file (``source``) and the
    chunk's position first, the folder last (a long share path first hid the file name: user tryout)."""
    placed = ("doc", "source", "chunk", FOLDER_KEY, SECTION_KEY)  # the document key is bookkeeping: not shown
    order = ["source", "chunk", *(k for k in metadata if k not in placed), FOLDER_KEY]  # section: a line of its own
    text = ", ".join(f"{k}={metadata[k]}" for k in order if k in metadata)
    return f"({text[:120]}{'...' if len(text) > 120 else ''})" if text else ""
