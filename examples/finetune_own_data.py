"""Fine-tune on your own JSONL of question/answer pairs, then use the result with dimension="auto".

Your file has one JSON object a line, with a question column and an answer column (here the
default names `anchor` / `positive`; pass `question_column=` / `answer_column=` for others).
This example writes such a file from the sample corpus's train split, fine-tunes the embedded
e5-small on it (held-out questions scored before and after, at every Matryoshka size), and loads
the result with `MatryoshkaEmbeddings(dimension="auto")`, which picks the smallest trained size
whose NDCG@10 stays within 1% of the best size's (normally the full one).

Run: python examples/finetune_own_data.py [--out DIR] [--max-steps N]
(--max-steps caps training for a quick try; leave it out for a real run.)
"""

import argparse
import json
from pathlib import Path

from finetune import FinetuneConfig, MatryoshkaFinetuner
from medrag import MatryoshkaEmbeddings
from medrag.qa.sample import load_sample_corpus

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="outputs/e5-small-sample")
ap.add_argument("--max-steps", type=int, default=-1)
args = ap.parse_args()

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
pairs_file = out.parent / "my_pairs.jsonl"
with open(pairs_file, "w", encoding="utf-8") as f:
    for question, passage in load_sample_corpus().pairs("train"):
        f.write(json.dumps({"anchor": question, "positive": passage}, ensure_ascii=False) + "\n")

config = FinetuneConfig(
    data=str(pairs_file),      # or a hub id such as "ilyass20/MedAnalyzer" where there is network
    model=None,                # the embedded e5-small; "intfloat/multilingual-e5-large" in production
    output_dir=str(out),
    eval_fraction=0.2,         # held-out questions (split by question: no held-out question is trained on,
                               # but a passage answering several questions can be a training positive too)
    batch_size=32,
    max_steps=args.max_steps,
    checkpoints=False,
)
result = MatryoshkaFinetuner(config).run()
print("NDCG@10 before -> after:", {d: (round(result.scores_before[d]["ndcg@10"], 3), round(s["ndcg@10"], 3))
                                   for d, s in result.scores_after.items()})

emb = MatryoshkaEmbeddings(str(out), dimension="auto")
print(f"dimension='auto' chose {emb.dimension} of {emb.dims}")
print(len(emb.embed_query("Que signifie une ferritine basse ?")))
