"""``medrag delete``: remove records from a store that ``medrag index`` (or any MatryoshkaChroma) built.

The shell's form of :meth:`medrag.store.MatryoshkaChroma.delete`, for scripted erasures (a patient's
notes under the right to erasure, a withdrawn leaflet): by ids, by a metadata filter, by a text the
records contain, or a combination (the records of those ids that match). The records go from every
search path and from medrag's own files at once; Chroma's own log keeps a copy until the procedure
of docs/store.md ("Erasure"). ``--dry-run`` counts what would go, writing nothing. The store is
opened with the model its collection records (as ``medrag search`` does); nothing is created.

Example::

    medrag delete --persist-dir ./chroma --filter '{"patient_id": "P0042"}' --dry-run
    medrag delete --persist-dir ./chroma --filter '{"patient_id": "P0042"}'
    medrag delete --persist-dir ./chroma --ids fer tsh
"""

from __future__ import annotations

import argparse
import json
import sys

from medrag.command import add_store_location_arguments, check_store_location
from medrag.embeddings import check_utf8
from medrag.errors import InvalidInputError
from medrag.searching import open_indexed_store, parse_filter
from medrag.text_checks import is_blank


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("delete", help="delete records by id, metadata filter or contained text (an erasure)",
                       description="Delete the records of a MatryoshkaChroma collection that match: by --ids, "
                                   "--filter, --contains, or several (the records that match all of them).")
    add_store_location_arguments(p, "folder of an embedded Chroma store")
    p.add_argument("--ids", nargs="+", default=None, metavar="ID", help="the ids of the records to delete")
    p.add_argument("--filter", default=None,
                   help='a Chroma metadata filter as JSON, e.g. \'{"patient_id": "P0042"}\'')
    p.add_argument("--contains", default=None, metavar="TEXT",
                   help="delete the records whose text contains TEXT (case-sensitive, as Chroma's $contains)")
    p.add_argument("--dry-run", action="store_true", help="count the records that would be deleted; write nothing")
    p.add_argument("--model", default=None,
                   help="model spec (default: the model the collection was built with, as it records it)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object: the counts and the deleted ids")
    p.set_defaults(func=run_delete)


def run_delete(args: argparse.Namespace) -> int:
    """Cheap checks, then the store (with its recorded model), then the delete; prints how many went."""
    if args.ids is None and args.filter is None and args.contains is None:
        raise InvalidInputError("say what to delete: --ids ID..., --filter JSON and/or --contains TEXT (to drop the "
                                "whole collection, use the Python API's delete_collection())")
    for n, id_ in enumerate(args.ids or []):
        check_utf8(id_, f"--ids value {n + 1}", "fix the id")
        if is_blank(id_):
            raise InvalidInputError(f"--ids value {n + 1} is empty")
    where = parse_filter(args.filter)
    if args.filter is not None and where is None:
        raise InvalidInputError("--filter {} matches every record; to empty the collection use the Python API's "
                                "reset_collection() or delete_collection()")
    if args.contains is not None:
        check_utf8(args.contains, "--contains", "fix the text")
        if is_blank(args.contains):
            raise InvalidInputError("--contains is empty")
    where_document = {"$contains": args.contains} if args.contains is not None else None
    check_store_location(args)
    store = open_indexed_store(args)
    try:
        matched = store.get(ids=args.ids, where=where, where_document=where_document, include=[])["ids"]
        deleted = 0 if args.dry_run else len(matched)
        if deleted:
            store.delete(matched)
        if args.json:
            print(json.dumps({"matched": len(matched), "deleted": deleted, "dry_run": bool(args.dry_run),
                              "ids": matched}, ensure_ascii=False))
        elif args.dry_run:
            print(f"{len(matched)} record(s) would be deleted from collection {args.collection!r} (dry run: "
                  "nothing written)")
        else:
            print(f"deleted {deleted} record(s) from collection {args.collection!r}")
        if not matched:
            print("nothing matched: check the ids, or the filter's keys and the types of its values (a number "
                  "stored as text matches only as text)", file=sys.stderr)
    finally:
        store.close()
    return 0
