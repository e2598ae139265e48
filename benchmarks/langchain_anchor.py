"""The hand-built LangChain hybrid anchor against medrag's lexical and hybrid search, per suite domain and size.

What a LangChain user builds by hand: ``BM25Retriever.from_texts`` with its defaults
(``preprocess_func=text.split``, rank_bm25's ``BM25Okapi``, ``k=4``) and a dense retriever
(``k=4``), fused by ``EnsembleRetriever(weights=[0.5, 0.5])`` (weighted RRF, c=60). Run exactly
as shipped (langchain-community / langchain-classic / rank_bm25, installed for this script only,
not medrag dependencies), plus a ``k=10`` variant so that NDCG@10 sees ten documents from each
side. The dense retriever is exact cosine at each size over the evaluator's cached encodings,
the same dense ranking as medrag's (``evaluation.hybrid``).

Usage (from the repository root; the suite encodings come from the evaluator's cache)::

    pip install langchain-community langchain-classic rank_bm25      # benchmark only
    python benchmarks/langchain_anchor.py --part test --pilot --max-queries 100 --max-passages 300 \\
        --weight 0.4 --out benchmarks/results/langchain_anchor_test.json

It writes the JSON and prints a Markdown table (macro NDCG@10 over the suite's choice domains,
and per domain) for docs/results.md.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import (RESULTS, ScriptParser, add_suite_arguments, auto_range, lexical_weight, load_suite,  # noqa: E402
                     positive_int, run_script, suite_data_root)
from medrag.lexical.fusion import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT  # noqa: E402

#: What the anchor runs on, installed for this script only: (module, pip package).
ANCHOR_PACKAGES = (("langchain_community", "langchain-community"), ("langchain_classic", "langchain-classic"),
                   ("rank_bm25", "rank_bm25"))


def anchor_rankings(task, q: np.ndarray, d: np.ndarray, k: int) -> tuple[list[list[str]], list[list[str]]]:
    """(BM25Retriever alone, EnsembleRetriever 0.5/0.5) rankings of every query, as LangChain runs them."""
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    dids = list(task.corpus)
    texts = list(task.corpus.values())
    qvec = {text: q[i] for i, text in enumerate(task.queries.values())}

    class DenseRetriever(BaseRetriever):
        """Exact cosine over precomputed unit vectors (what a vector store's retriever returns)."""

        k: int = 4

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            scores = d @ qvec[query]
            top = np.argsort(-scores, kind="stable")[: self.k]
            return [Document(page_content=texts[i], metadata={"id": dids[i]}) for i in top]

    bm25 = BM25Retriever.from_texts(texts, metadatas=[{"id": i} for i in dids], k=k)
    ensemble = EnsembleRetriever(retrievers=[bm25, DenseRetriever(k=k)], weights=[0.5, 0.5], id_key="id")
    lexical, fused = [], []
    for text in task.queries.values():
        lexical.append([doc.metadata["id"] for doc in bm25.invoke(text)])
        fused.append([doc.metadata["id"] for doc in ensemble.invoke(text)])
    return lexical, fused


def main(argv: Sequence[str] | None = None) -> None:
    parser = ScriptParser(__file__, __doc__.split("\n")[0])
    parser.add_argument("--model", default="bundled:multilingual-e5-small", help="model spec of the dense side")
    add_suite_arguments(parser)
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[384, 256, 128, 64],
                        help="Matryoshka sizes of the dense side")
    parser.add_argument("--weight", type=lexical_weight, default=DEFAULT_LEXICAL_WEIGHT,
                        help="medrag's lexical weight: auto (a weight per query) or a number")
    parser.add_argument("--fusion", default=DEFAULT_FUSION, choices=("rrf", "minmax"), help="medrag's fusion")
    parser.add_argument("--out", default=str(RESULTS / "langchain_anchor.json"), help="the JSON written")
    args = parser.parse_args(argv)
    data_root = suite_data_root(args.data_root)
    missing = [pip for module, pip in ANCHOR_PACKAGES if importlib.util.find_spec(module) is None]
    if missing:
        raise SystemExit(f"the anchor needs {', '.join(missing)} (not medrag dependencies): "
                         f"pip install {' '.join(missing)}")

    from evaluation.cache import EmbeddingCache
    from evaluation.hybrid import evaluate_hybrid
    from evaluation.metrics import per_query_metrics
    from medrag import MatryoshkaEmbeddings
    from medrag.vectors import truncate_embeddings

    suite = load_suite(args, data_root)
    emb = MatryoshkaEmbeddings(args.model, device="cpu")
    cache = EmbeddingCache()
    metric = "ndcg@10"
    rows: dict[str, dict] = {}
    for name, dom in suite.domains.items():
        t0 = time.perf_counter()
        task = dom.task
        q = cache.encode(emb, list(task.queries.values()), side="query")
        d = cache.encode(emb, list(task.corpus.values()), side="document")
        relevant = [task.qrels[i] for i in task.queries]
        ours = evaluate_hybrid(task, q, d, args.sizes, weights=[args.weight, 0.5], method=args.fusion, metrics=[metric])
        row = {"medrag_bm25": ours.score("lexical", metric=metric), "sizes": {}}
        for dim in args.sizes:
            qd, dd = truncate_embeddings(q, dim), truncate_embeddings(d, dim)
            cell = {"dense": ours.score("dense", dim, metric=metric),
                    "medrag_hybrid": ours.score("hybrid", dim, args.weight, metric),
                    "medrag_hybrid_w0.5": ours.score("hybrid", dim, 0.5, metric)}
            for k in (4, 10):
                lex, fused = anchor_rankings(task, qd, dd, k)
                cell[f"langchain_ensemble_k{k}"] = float(per_query_metrics(fused, relevant, [metric])[metric].mean())
                row[f"langchain_bm25_k{k}"] = float(per_query_metrics(lex, relevant, [metric])[metric].mean())
            row["sizes"][str(dim)] = cell
        rows[name] = row
        print(f"{name}: {time.perf_counter() - t0:.0f}s", flush=True)
    choice = suite.choice_domains
    macro = {str(dim): {key: float(np.mean([rows[n]["sizes"][str(dim)][key] for n in choice]))
                        for key in rows[choice[0]]["sizes"][str(dim)]} for dim in args.sizes}
    for key in ("medrag_bm25", "langchain_bm25_k4", "langchain_bm25_k10"):
        for dim in args.sizes:
            macro[str(dim)][key] = float(np.mean([rows[n][key] for n in choice]))
    result = {"command": "python benchmarks/langchain_anchor.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" if not isinstance(v, bool)
        else f"--{k}" for k, v in vars(args).items() if v is not False and v is not None),
        "suite": suite.settings | {"part": args.part, "pilot": args.pilot}, "model": args.model,
        "weight": args.weight, **auto_range(args.weight), "fusion": args.fusion, "metric": metric, "choice_domains": choice, "domains": rows, "macro": macro}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    cols = ["dense", "medrag_hybrid", "medrag_hybrid_w0.5", "langchain_ensemble_k4", "langchain_ensemble_k10",
            "medrag_bm25", "langchain_bm25_k4", "langchain_bm25_k10"]
    print(f"\nmacro {metric} over {', '.join(choice)} (medrag hybrid: {args.fusion} at w={args.weight}, and at 0.5)\n")
    print("| size | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1))
    for dim in args.sizes:
        print(f"| {dim} | " + " | ".join(f"{macro[str(dim)][c]:.4f}" for c in cols) + " |")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
