"""Evaluate a base model against a fine-tuned one at every size, and save the plot.

Prints the seed-style table (Dimension | Score Initial | Score Final | Gain, with a paired
permutation test's p-value) and writes the report folder: tables (Markdown, CSV, JSON), the plot
of NDCG@10 against size with 95% bootstrap bands, and the recommended sizes.

Run: python examples/evaluate_and_plot.py [--finetuned DIR] [--out DIR]
Without --finetuned it compares the embedded model with itself at another batch size (a smoke
run); run examples/finetune_own_data.py first to get a fine-tuned folder.
"""

import argparse

from evaluation.evaluator import evaluate_models
from medrag import MatryoshkaEmbeddings
from medrag.qa.sample import load_sample_corpus

ap = argparse.ArgumentParser()
ap.add_argument("--finetuned", default=None, help="a folder written by medrag finetune")
ap.add_argument("--out", default="outputs/report-sample")
args = ap.parse_args()

corpus = load_sample_corpus()
task = corpus.task("eval")  # every passage that answers a question counts as relevant
base = MatryoshkaEmbeddings()
final = args.finetuned or MatryoshkaEmbeddings(base.model, batch_size=8)
report = evaluate_models([base, final], task, labels=["base", "fine-tuned" if args.finetuned else "base (again)"])
print(report.comparison_table())
print(report.recommendations_table())
paths = report.write(args.out)
print("wrote", ", ".join(str(p) for p in paths.values()))
