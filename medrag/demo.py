"""``medrag demo``: the whole product on the embedded model, offline, in a few minutes.

1. Index the French medical sample corpus (:mod:`medrag.qa.sample`) into a persistent two-stage
   store (:class:`medrag.MatryoshkaChroma`); a second run reuses it.
2. Answer five French questions: top passages with their coarse (64-dim) and rerank (full-size)
   scores, and the time spent in each stage; beside them, the hybrid answer (the funnel fused
   with French BM25, :meth:`medrag.MatryoshkaChroma.hybrid_search`) with each hit's BM25 rank.
3. Evaluate NDCG@10 at every Matryoshka size on the sample's held-out questions and recommend
   sizes; then dense vs BM25 vs hybrid at every size (:mod:`evaluation.hybrid`).
4. With ``--finetune``: a short fine-tune on the sample's train split, then the before/after table.

Example::

    $ medrag demo                 # offline, on a laptop CPU, after the model's one-time conversion
    $ medrag demo --finetune      # adds a short fine-tune (a few minutes on CPU)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import tempfile
import time
from pathlib import Path

from evaluation.cache import EmbeddingCache
from evaluation.evaluator import evaluate_models
from evaluation.hybrid import evaluate_hybrid
from finetune.config import FinetuneConfig
from finetune.model_card import score_table
from finetune.training import MatryoshkaFinetuner
from medrag._store_lock import refuse_if_held_elsewhere
from medrag.bundled import cache_dir
from medrag.command import check_writable_dir
from medrag.embeddings import MatryoshkaEmbeddings
from medrag.errors import CollectionMismatchError, InvalidInputError
from medrag.qa.sample import load_sample_corpus
from medrag.store import MatryoshkaChroma, drop_collection

logger = logging.getLogger(__name__)

COLLECTION = "medrag-demo"
#: Five questions written for the demo (they are not in the sample corpus).
QUESTIONS = (
    "Mon potassium est à 6,2 dans la prise de sang, est-ce dangereux ?",
    "Que veut dire une TSH basse sur un bilan thyroïdien ?",
    "Comment savoir si le diabète est bien équilibré sur plusieurs mois ?",
    "Quels médicaments prend-on pour éviter un caillot quand le cœur bat de façon irrégulière ?",
    "Faut-il s'inquiéter d'une CRP très augmentée ?",
)


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("demo", help="index the French medical sample, answer questions, evaluate every size")
    p.add_argument("--model", default=None, help="model spec (default: medrag's default model, medrag.DEFAULT_SPEC)")
    p.add_argument("--dir", default=None,
                   help="where the demo store lives (default: $MEDRAG_CACHE/demo, else ~/.cache/medrag/demo, or "
                        "$XDG_CACHE_HOME/medrag/demo where that is set)")
    p.add_argument("--rebuild", action="store_true", help="drop the demo store and index the corpus again")
    p.add_argument("--k", type=int, default=3, help="passages shown per question (default 3)")
    p.add_argument("--finetune", action="store_true", help="also fine-tune briefly on the sample's train split")
    p.add_argument("--finetune-dir", default=None,
                   help="output folder of --finetune (default: $MEDRAG_CACHE/demo-finetuned)")
    p.add_argument("--epochs", type=float, default=1.0, help="epochs of --finetune (default 1)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    folder = Path(args.dir) if args.dir else cache_dir() / "demo"
    # the cheap checks come before loading the model, and create nothing: a refused run leaves no folder;
    # without --dir the folder is the cache's, named as such (a bad MEDRAG_CACHE blamed --dir, not given)
    try:
        check_writable_dir(folder, "--dir", create=False)
    except InvalidInputError as exc:
        if args.dir:
            raise
        raise InvalidInputError(str(exc).replace("--dir ", "the demo store in the cache root: ", 1).split("; pass")[0]
                                + "; point MEDRAG_CACHE at a folder this user can write, or pass --dir") from None
    if args.rebuild:  # refused before the model loads, and before anything is dropped
        refuse_if_held_elsewhere(folder)
    if args.finetune and args.finetune_dir:
        check_writable_dir(Path(args.finetune_dir), "--finetune-dir", create=False)
    if args.k < 1:
        raise InvalidInputError(f"--k must be >= 1, got {args.k}")
    if not args.finetune:
        ignored = [flag for flag, given in (("--finetune-dir", args.finetune_dir is not None),
                                            ("--epochs", args.epochs != 1.0)) if given]
        if ignored:
            raise InvalidInputError(f"{', '.join(ignored)}: only used with --finetune; add it or drop them")
    elif not (args.epochs > 0 and math.isfinite(args.epochs)):  # checked before the demo's minutes, not after
        raise InvalidInputError(f"--epochs must be a number > 0, got {args.epochs}")
    corpus = load_sample_corpus()
    emb = MatryoshkaEmbeddings(args.model)
    print(f"Model: {emb.spec} - full size {emb.full_dim}, Matryoshka sizes {emb.dims}")
    store = build_store(emb, corpus, folder, rebuild=args.rebuild)

    print(f"\n== Two-stage search: {store.coarse_dim}-dim coarse HNSW, {store.candidates} candidates, "
          f"{emb.full_dim}-dim rerank ==")
    store.search_with_stages(QUESTIONS[0], k=1, hybrid=True)  # loads the BM25 index: not counted in a query's time
    for question in QUESTIONS:
        result = store.search_with_stages(question, k=args.k)
        t = result.timings
        print(f"\nQ: {question}")
        print(f"   embed {t['embed_ms']:.1f} ms | stage 1 (coarse) {t['coarse_ms']:.1f} ms | "
              f"stage 2 (rerank) {t['rerank_ms']:.1f} ms")
        for rank, hit in enumerate(result.hits, 1):
            text = hit.document.page_content
            print(f"   {rank}. [{hit.document.metadata.get('passage_id', hit.document.id)}] "
                  f"coarse {hit.coarse_score:.3f} (rank {hit.coarse_rank}) -> rerank {hit.score:.3f}  "
                  f"{text[:90]}{'...' if len(text) > 90 else ''}")
        hybrid = store.search_with_stages(question, k=args.k, hybrid=True)
        print(f"   hybrid (BM25 weight {hybrid.lexical_weight:.2f}{' (auto)' if store.lexical_weight == 'auto' else ''}, "
              f"{hybrid.timings['lexical_ms']:.1f} ms lexical):")
        for rank, hit in enumerate(hybrid.hits, 1):
            text = hit.document.page_content
            bm25 = f"BM25 rank {hit.lexical_rank}" if hit.lexical_rank else "no BM25 match"
            print(f"   {rank}. [{hit.document.metadata.get('passage_id', hit.document.id)}] "
                  f"cosine {hit.score:.3f}, {bm25}  {text[:80]}{'...' if len(text) > 80 else ''}")

    print("\n== Retrieval quality per size (sample eval split: "
          f"{len(corpus.pairs('eval'))} questions against all {len(corpus.passages)} passages) ==")
    report = evaluate(emb, corpus)
    print(size_table(report))
    rec = report.models[0].recommendations
    # the presets dimension="balanced"/"edge" are the seed report's fixed 512/128: a user copied "edge 256"
    # from here and got 128 (user tryout)
    print(f"\nRecommended sizes from these scores: max {rec.max}, balanced {rec.balanced} (within "
          f"{100 * rec.balanced_tolerance:g}% of the best), edge {rec.edge} (within {100 * rec.edge_tolerance:g}%): "
          f"MatryoshkaEmbeddings(dimension={rec.edge}); dimension='auto' picks from the model's recorded scores, "
          "and the presets 'balanced'/'edge' are fixed sizes (512/128, capped to the model)")

    print("\n== Dense vs lexical (BM25) vs hybrid, NDCG@10 per size (same questions) ==")
    print(hybrid_table(emb, corpus, sorted(report.models[0].sizes, reverse=True), store.lexical_weight))

    if args.finetune:
        run_finetune(emb, corpus, args)
    print(f"\nDone in {time.perf_counter() - t_start:.0f} s. Store: {folder}")
    print(f"Search it: medrag search \"votre question\" --persist-dir {shlex.quote(str(folder))} --collection {COLLECTION}")
    return 0


def build_store(emb, corpus, folder: Path, rebuild: bool = False):
    """Open the demo store in ``folder``, indexing the sample corpus unless it is already there.

    The store is reused only when it holds exactly the sample's passages, with their current
    text, indexed from the same sample version (``sample_version`` in each record's metadata):
    after a new sample version (:data:`medrag.qa.sample.SAMPLE_VERSION`) the changed passages are
    re-embedded and passages no longer in the sample removed, so the demo never answers from
    outdated text.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        store = MatryoshkaChroma(COLLECTION, embedding_function=emb, persist_directory=str(folder))
    except CollectionMismatchError:  # built with another model (e.g. a previous default): the demo owns it
        print(f"The demo store in {folder} was built with another model; rebuilding it.")
        store = None
    if rebuild or store is None:
        # medrag's own drop: refused while another process has the folder open (the raw client's
        # emptied it under that process, then said "nothing was written"), and the collection's
        # rows of the vector copy and its lexical index go with it (they stayed, growing each rebuild)
        if store is not None:
            store.delete_collection()
        else:
            drop_collection(folder, COLLECTION)
        store = MatryoshkaChroma(COLLECTION, embedding_function=emb, persist_directory=str(folder))
    ids = corpus.ids()
    stored = {d.id: d for d in store.get_by_ids(ids)}
    stale = [p.passage_id for p in corpus.passages
             if p.passage_id not in stored or stored[p.passage_id].page_content != p.passage
             or stored[p.passage_id].metadata.get("sample_version") != corpus.version]
    extra = set(store.collection.get(include=[])["ids"]) - set(ids) if len(store) != len(stored) else set()
    if not stale and not extra:
        print(f"Reusing the demo store in {folder} ({len(ids)} passages, sample v{corpus.version}).")
        return store
    if extra:
        store.delete(sorted(extra))
    if stored:
        old = sorted({str(d.metadata.get("sample_version", 1)) for d in stored.values()})
        print(f"The demo store in {folder} holds sample v{'/'.join(old)}: updating it to v{corpus.version} "
              f"({len(stale)} passages re-indexed, {len(extra)} removed).")
    t0 = time.perf_counter()
    todo = [p for p in corpus.passages if p.passage_id in set(stale)]
    store.add_texts([p.passage for p in todo],
                    metadatas=[{"passage_id": p.passage_id, "topic": p.topic, "sample_version": corpus.version}
                               for p in todo], ids=[p.passage_id for p in todo])
    print(f"Indexed {len(todo)} passages into {folder} in {time.perf_counter() - t0:.1f} s.")
    return store


def evaluate(emb, corpus):
    """Every size of ``emb`` on the sample's eval questions, the whole sample as corpus.

    A question is relevant to every passage that answers it (:meth:`medrag.qa.sample.SampleCorpus.task`).
    """
    return evaluate_models([emb], corpus.task("eval"), metrics=("ndcg@10", "mrr@10", "recall@10"), n_bootstrap=1000,
                           n_resamples=1000)


def size_table(report) -> str:
    m = report.models[0]
    level = int(round(100 * report.settings.get("confidence", 0.95)))
    lines = [f"| Size | NDCG@10 [{level}% CI] | MRR@10 | Recall@10 |", "|---:|---:|---:|---:|"]
    for dim in sorted(m.sizes, reverse=True):
        means, ci = m.sizes[dim].means, m.cis[dim]["ndcg@10"]
        lines.append(f"| {dim} | {means['ndcg@10']:.3f} [{ci.low:.3f}, {ci.high:.3f}] | {means['mrr@10']:.3f} | "
                     f"{means['recall@10']:.3f} |")
    return "\n".join(lines)


def hybrid_table(emb, corpus, sizes: list[int], weight: float | str) -> str:
    """Dense, BM25 and hybrid NDCG@10 at each size on the sample's eval split (encodings from the cache)."""
    task = corpus.task("eval")
    cache = EmbeddingCache()
    q = cache.encode(emb, list(task.queries.values()), side="query")
    d = cache.encode(emb, list(task.corpus.values()), side="document")
    return evaluate_hybrid(task, q, d, sizes, weights=[weight], metrics=["ndcg@10"]).to_markdown()


def run_finetune(emb, corpus, args: argparse.Namespace) -> None:
    """Fine-tune on the sample's train split, score on its eval split, print the seed-style table."""
    out = Path(args.finetune_dir) if args.finetune_dir else cache_dir() / "demo-finetuned"
    print(f"\n== Fine-tuning on the sample's train split ({len(corpus.pairs('train'))} pairs, "
          f"{args.epochs:g} epoch) ==")
    with tempfile.TemporaryDirectory(prefix="medrag-demo-ft-") as tmp:
        work = Path(tmp)
        for split in ("train", "eval"):
            with open(work / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for q, p in corpus.pairs(split):
                    f.write(json.dumps({"anchor": q, "positive": p}, ensure_ascii=False) + "\n")
        # the starting model's sizes (the fine-tune's default list stops at 64: the default model's 32 was lost)
        cfg = FinetuneConfig(data=str(work / "train.jsonl"), eval_data=str(work / "eval.jsonl"), model=emb.spec,
                             output_dir=str(out), epochs=args.epochs, batch_size=32, checkpoints=False,
                             dims=sorted(emb.dims, reverse=True))
        result = MatryoshkaFinetuner(cfg).run()
    eval_pairs = corpus.pairs("eval")
    # not the table above: fine-tuning scores the eval questions against their own answers only
    print(f"NDCG@10 on the fine-tuning's eval task: the {len({q for q, _ in eval_pairs})} eval questions against "
          f"their {len({p for _, p in eval_pairs})} answer passages (the table above ranks all "
          f"{len(corpus.passages)} passages, so its scores are lower)")
    print(score_table(result.scores_before, result.scores_after))
    verdict = full_size_verdict(result.scores_before, result.scores_after)
    if verdict:
        print(verdict)
    print(f"Trained in {result.train_seconds:.0f} s ({result.samples_per_second:.1f} samples/s); model in {out}")


def full_size_verdict(before: dict[int, dict[str, float]], after: dict[int, dict[str, float]],
                      metric: str = "ndcg@10") -> str | None:
    """A line saying that the fine-tuned model scores lower at full size than its start, or None: the
    demo's and the examples' short fine-tunes often do, and the table alone left a newcomer to spot it
    (user tryout)."""
    full = max(after, default=None)
    if full is None or full not in before or after[full][metric] >= before[full][metric]:
        return None
    return (f"At full size ({full}) the fine-tuned model scores lower than its start ({before[full][metric]:.3f} -> "
            f"{after[full][metric]:.3f}): a few hundred pairs of one small sample teach little to a model already "
            "trained on French medical text. Fine-tune on pairs of your own domain (a few thousand), and keep "
            "whichever scores higher on questions neither trained on (medrag evaluate --model START --model OUTPUT).")
