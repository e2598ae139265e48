"""Evaluate a base model against a fine-tuned one at every size, and save the plot.

Prints the seed-style table (Dimension | Score Initial | Score Final | Gain, with a paired
permutation test's p-value) and writes the report folder: tables (Markdown, CSV, JSON), the plot
of NDCG@10 against size with 95% bootstrap bands, and the recommended sizes.

The base is the model the fine-tune started from: the ``base_model`` recorded in the fine-tuned
folder's matryoshka.json, else the plain embedded e5-small (``medrag.BUNDLED_SPEC``, which
examples/finetune_own_data.py fine-tunes). It is *not* the no-argument MatryoshkaEmbeddings, which
loads medrag's own fine-tuned default (``medrag.DEFAULT_SPEC``), which would hide the gain of your fine-tune.

Run: python examples/evaluate_and_plot.py [--finetuned DIR] [--out DIR]
Without --finetuned it compares the plain base with itself at another batch size (a smoke
run); run examples/finetune_own_data.py first to get a fine-tuned folder.
"""

import argparse

from evaluation.evaluator import evaluate_models
from medrag import BUNDLED_SPEC, MatryoshkaEmbeddings
from medrag.metadata import MatryoshkaMetadata
from medrag.qa.sample import load_sample_corpus

ap = argparse.ArgumentParser()
ap.add_argument("--finetuned", default=None, help="a folder written by medrag finetune")
ap.add_argument("--out", default="outputs/report-sample")
args = ap.parse_args()

metadata = MatryoshkaMetadata.load(args.finetuned) if args.finetuned else None
base_spec = (metadata.base_model if metadata and metadata.base_model else None) or BUNDLED_SPEC
print(f"base: {base_spec}")

corpus = load_sample_corpus()
task = corpus.task("eval")  # every passage that answers a question counts as relevant
base = MatryoshkaEmbeddings(base_spec)
final = args.finetuned or MatryoshkaEmbeddings(base.model, batch_size=8)
report = evaluate_models([base, final], task, labels=[f"base ({base_spec})",
                                                      "fine-tuned" if args.finetuned else "base (again)"])
print(report.comparison_table())
print(report.recommendations_table())
paths = report.write(args.out)
print("wrote", ", ".join(str(p) for p in paths.values()))
