"""The validation suite: one retrieval task per domain, a ``val`` part for every choice, a ``test`` part
reported once.

Domains (:data:`DOMAINS`):

- ``frenchmedmcqa``: exam questions -> the text of their correct option(s) (Labrak et al., 2023);
  ``val`` = the upstream ``dev.json``, ``test`` = ``test.json``. A model trained on FrenchMedMCQA
  must train on ``train.json`` only (``load_frenchmedmcqa(folder, train_splits=("train",))``).
- ``leaflets``, ``cases``, ``abstracts``: the French medical text (:mod:`medrag.qa.french_text`),
  split by document; the queries of the ``val`` (``test``) documents against every passage of the
  ``val`` (``test``) documents, so each query has distractors from other documents.
- ``sample``: the eval split of the sample shipped with medrag, **report-only**: its ``val`` and
  ``test`` parts are the same task, so it cannot be both chosen on and reported honestly; it is
  scored and shown, and left out of the macro-average used for choices (:data:`CHOICE_DOMAINS`).

Choices are made on the macro-average over :data:`CHOICE_DOMAINS` of the ``val`` part, size by size.

Pilot mode (``pilot=True``) caps each domain at ``max_queries`` queries (default 300) and
``max_passages`` passages (default 1500: about 4,000 texts in all, which e5-small encodes in about
5 minutes on 2 CPU cores, docs/results.md "Validation suite"), for sweeps on 2 CPU cores: the kept queries are the
first by a stable hash of their ids, every passage relevant to them is kept, and the corpus is
filled up to the cap with the other passages in hash order (deterministic; the same suite every run,
so the embedding cache is hit).

Example::

    >>> from medrag.qa.suite import build_suite
    >>> suite = build_suite("val", pilot=True, data_root="../shared/data")
    >>> [(d.name, len(d.task.queries), len(d.task.corpus)) for d in suite.domains.values()]
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medrag.errors import DataError
from medrag.qa.french_text import UNITS_VERSION, document_task
from medrag.qa.pairs import load_frenchmedmcqa
from medrag.qa.sample import load_sample_corpus
from medrag.qa.task import IRTask

logger = logging.getLogger(__name__)

DOMAINS: tuple[str, ...] = ("frenchmedmcqa", "leaflets", "cases", "abstracts", "sample")
#: Domains of the macro-average used for choices (``sample`` is report-only).
CHOICE_DOMAINS: tuple[str, ...] = ("frenchmedmcqa", "leaflets", "cases", "abstracts")
REPORT_ONLY: tuple[str, ...] = ("sample",)
#: Domains whose data ships inside medrag (no ``../shared`` data root needed).
PACKAGED_DOMAINS: frozenset[str] = frozenset({"sample"})
SUITE_PARTS = ("val", "test")
PILOT_MAX_QUERIES = 300
PILOT_MAX_PASSAGES = 1500
#: Default folder holding ``frenchmedmcqa/`` and ``french-medical-text/`` (beside a checkout);
#: override with ``data_root=`` or ``$MEDRAG_DATA``.
DEFAULT_DATA_ROOT = Path("..") / "shared" / "data"
#: The folders of the data root the suite reads: FrenchMedMCQA; the leaflets, cases and abstracts.
FRENCHMEDMCQA_FOLDER, FRENCH_TEXT_FOLDER = "frenchmedmcqa", "french-medical-text"
DATA_FOLDERS: tuple[str, ...] = (FRENCHMEDMCQA_FOLDER, FRENCH_TEXT_FOLDER)


@dataclass(frozen=True)
class SuiteDomain:
    """One domain of the suite: its task and whether it counts in the macro-average."""

    name: str
    task: IRTask
    report_only: bool = False


@dataclass
class ValidationSuite:
    """The tasks of every domain for one part (``"val"`` or ``"test"``)."""

    part: str
    pilot: bool
    domains: dict[str, SuiteDomain] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def choice_domains(self) -> list[str]:
        """Domains of the macro-average (every domain that is not report-only)."""
        return [n for n, d in self.domains.items() if not d.report_only]

    def describe(self) -> str:
        """One line per domain: queries, passages, relevant per query."""
        lines = [f"validation suite: part {self.part}{' (pilot)' if self.pilot else ''}"]
        for d in self.domains.values():
            rel = sum(len(v) for v in d.task.qrels.values()) / len(d.task.qrels)
            lines.append(f"  {d.name:13s} {len(d.task.queries):6d} queries {len(d.task.corpus):7d} passages "
                         f"{rel:.2f} relevant/query{'  (report-only)' if d.report_only else ''}")
        return "\n".join(lines)


def resolve_data_root(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$MEDRAG_DATA``, else :data:`DEFAULT_DATA_ROOT`."""
    return Path(path or os.environ.get("MEDRAG_DATA") or DEFAULT_DATA_ROOT).expanduser()


def domain_task(domain: str, part: str = "val", root: str | os.PathLike[str] | None = None, *,
                leaflet_queries: str = "mixed") -> IRTask:
    """The full (uncapped) task of one domain and part.

    ``leaflet_queries`` phrases the leaflet queries (``"mixed"``, the suite's setting: half heading
    form, half question form by a stable hash; ``"heading"`` or ``"question"`` for studies).

    Raises:
        DataError: unknown domain or part, or missing data (naming the folder to pass).
    """
    if part not in SUITE_PARTS:
        raise DataError(f"unknown suite part {part!r}; use 'val' (for choices) or 'test' (reported once)")
    root_dir = resolve_data_root(root)
    if domain == "frenchmedmcqa":
        folder = root_dir / FRENCHMEDMCQA_FOLDER
        split = "dev" if part == "val" else "test"
        ds = load_frenchmedmcqa(folder, train_splits=(), eval_split=split)
        task = ds.eval_task(name=f"frenchmedmcqa ({part}: {split}.json)")
    elif domain in ("leaflets", "cases", "abstracts"):
        task = document_task(domain, part, root_dir / FRENCH_TEXT_FOLDER,
                             query_style=leaflet_queries if domain == "leaflets" else "mixed")
    elif domain == "sample":
        task = load_sample_corpus().task("eval")  # every passage that answers a question is relevant
        task.name = f"sample v{task.extra['sample_version']} (eval, report-only)"
    else:
        raise DataError(f"unknown suite domain {domain!r}; use any of {', '.join(DOMAINS)}")
    return task


def pilot_task(task: IRTask, max_queries: int = PILOT_MAX_QUERIES, max_passages: int = PILOT_MAX_PASSAGES,
               seed: int = 0) -> IRTask:
    """A deterministic subset of ``task``: at most ``max_queries`` queries and ``max_passages`` passages,
    keeping every passage relevant to a kept query (a query whose relevant passages would overflow
    the cap is dropped).

    Example::

        >>> from medrag.qa.task import IRTask
        >>> task = IRTask.from_pairs([(f"q{i}", f"d{i}") for i in range(10)])
        >>> small = pilot_task(task, max_queries=3, max_passages=5)
        >>> len(small.queries), len(small.corpus)
        (3, 5)
    """
    if max_queries < 1 or max_passages < 1:
        raise DataError(f"pilot caps must be >= 1, got {max_queries} queries / {max_passages} passages")
    if len(task.queries) <= max_queries and len(task.corpus) <= max_passages:
        return task

    def rank(kind: str, key: str) -> str:
        return hashlib.sha256(f"{seed}\x00{kind}\x00{key}".encode("utf-8")).hexdigest()

    kept_q: list[str] = []
    kept_d: set[str] = set()
    for qid in sorted(task.queries, key=lambda q: rank("q", q)):
        if len(kept_q) >= max_queries:
            break
        new = task.qrels[qid] - kept_d
        if len(kept_d) + len(new) > max_passages:
            continue
        kept_q.append(qid)
        kept_d |= new
    if not kept_q:
        raise DataError(f"{task.name}: no query fits in {max_passages} passages")
    for did in sorted(task.corpus, key=lambda d: rank("d", d)):
        if len(kept_d) >= max_passages:
            break
        kept_d.add(did)
    queries = {q: task.queries[q] for q in task.queries if q in set(kept_q)}
    corpus = {d: t for d, t in task.corpus.items() if d in kept_d}
    qrels = {q: dict(task.grades[q]) for q in queries}
    return IRTask(queries, corpus, qrels, name=f"{task.name} [pilot {max_queries}x{max_passages}]",
                  extra=dict(task.extra, pilot=True))


def build_suite(part: str = "val", *, pilot: bool = False, data_root: str | os.PathLike[str] | None = None,
                domains: Sequence[str] | None = None, max_queries: int | None = None,
                max_passages: int | None = None, seed: int = 0, leaflet_queries: str = "mixed"
                ) -> ValidationSuite:
    """The suite's tasks for ``part`` (``"val"``: choices; ``"test"``: reported once).

    Args:
        part: ``"val"`` or ``"test"``.
        pilot: cap each domain at ``max_queries`` x ``max_passages`` (see :func:`pilot_task`;
            defaults :data:`PILOT_MAX_QUERIES` x :data:`PILOT_MAX_PASSAGES`). The caps without
            ``pilot`` are a :class:`~medrag.errors.DataError` (they were ignored).
        data_root: the folder with ``frenchmedmcqa/`` and ``french-medical-text/`` (default ``../shared/data``).
        domains: a subset of :data:`DOMAINS` (default: all).
        seed: seeds the pilot sampling.
        leaflet_queries: see :func:`domain_task` (keep ``"mixed"`` for choices).
    """
    if isinstance(domains, str):  # "cases" would be read as the domains 'c', 'a', 's', 'e', 's'
        raise DataError(f"domains must be a list of domain names, e.g. [{domains!r}], not a string")
    names = list(domains) if domains is not None else list(DOMAINS)
    bad = [d for d in names if d not in DOMAINS]
    if bad:
        raise DataError(f"unknown suite domain(s) {bad}; use any of {', '.join(DOMAINS)}")
    if not pilot and (max_queries is not None or max_passages is not None):  # silently ignored before
        raise DataError("max_queries and max_passages cap the pilot suite: pass pilot=True with them, or "
                        "neither for the full suite")
    max_queries = PILOT_MAX_QUERIES if max_queries is None else max_queries
    max_passages = PILOT_MAX_PASSAGES if max_passages is None else max_passages
    data_root_path = resolve_data_root(data_root)
    suite = ValidationSuite(part, pilot, settings={
        "data_root": str(data_root_path), "seed": seed,
        "max_queries": max_queries if pilot else None, "max_passages": max_passages if pilot else None,
        "leaflet_queries": leaflet_queries, "units_version": UNITS_VERSION})
    for name in names:
        task = domain_task(name, part, data_root_path, leaflet_queries=leaflet_queries)
        if pilot:
            task = pilot_task(task, max_queries, max_passages, seed)
        suite.domains[name] = SuiteDomain(name, task, report_only=name in REPORT_ONLY)
        logger.info("suite %s/%s: %d queries, %d passages", name, part, len(task.queries), len(task.corpus))
    return suite
