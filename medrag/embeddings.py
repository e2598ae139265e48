"""Matryoshka embeddings for LangChain: any trained size, chosen by hand or adaptively.

A Matryoshka model (Kusupati et al., 2022, "Matryoshka Representation Learning",
arXiv:2205.13147) is trained so that the first ``d`` coordinates of its vector are a good
embedding on their own for each trained size ``d``. Truncating then re-normalising gives
smaller, cheaper vectors with a measured quality loss.

Example::

    >>> from medrag import MatryoshkaEmbeddings
    >>> emb = MatryoshkaEmbeddings(dimension=64)           # medrag's default model, offline
    >>> len(emb.embed_query("Quels sont les symptômes du diabète ?"))
    64
    >>> MatryoshkaEmbeddings(dimension="edge").dimension   # the seed's edge-device size
    128
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
from langchain_core.embeddings import Embeddings

from medrag.encoding import DEFAULT_BATCH_SIZE, encode_texts, model_lock
from medrag.flags import check_flag
from medrag.errors import DimensionError, InvalidInputError, MetadataError, checked_arguments
from medrag.metadata import MatryoshkaMetadata, default_dims
from medrag.models import check_device, embedding_dim, legacy_model_fingerprints, load_model, model_fingerprint
from medrag.prompts import DOCUMENT_PROMPT_NAMES, QUERY_PROMPT_NAMES, pick_prompt_name
from medrag.sizes import smallest_size_within
from medrag.text_checks import is_blank
from medrag.vectors import truncate_embeddings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DimensionSpec = Union[int, Literal["auto", "max", "balanced", "edge"], None]

#: The seed report's recommendations: 1024 for critical use, 512 as the balance, 128 for edge
#: devices. ``max`` is the model's full size; the others are capped to it.
PRESETS: dict[str, int | None] = {"max": None, "balanced": 512, "edge": 128}



def _first_caller_outside_medrag() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside the medrag package
    (the user's ``embed_documents``, ``add_texts`` or retriever call), whatever the path to it."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1  # level 1: the function that warns
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def validate_texts(texts: Sequence[str], *, one_text_hint: str = "use embed_query for a single text",
                   describe: Callable[[int], str] | None = None, blank_hint: str = "") -> list[str]:
    """Return ``texts`` as a list, or raise naming the first bad entry.

    Args:
        texts: the texts.
        one_text_hint: what the error for a single string tells the caller to do instead.
        describe: what else names entry ``i`` in the error (its id, its source), after its index: an
            index alone is the position in one call, which LangChain's ``index()`` makes in batches.
        blank_hint: what the error for a blank text tells the caller to do.

    Raises:
        InvalidInputError: a single string (or None, or another non-list) instead of a list, or an
            entry that is not a string, is blank (empty, or only whitespace or invisible characters:
            :func:`is_blank`), or holds a lone surrogate (its
            index is named). It is a ``ValueError`` too.
    """
    if isinstance(texts, str):
        raise InvalidInputError(f"expected a list of texts, got one string; {one_text_hint}")
    if isinstance(texts, (bytes, dict)) or not hasattr(texts, "__iter__"):
        raise InvalidInputError(f"expected a list of texts, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        name = f"text at index {i}{describe(i) if describe is not None else ''}"
        if not isinstance(t, str):
            raise InvalidInputError(f"{name} is {type(t).__name__}, not a string")
        if is_blank(t):
            raise InvalidInputError(f"{name} is empty or holds only whitespace or invisible characters{blank_hint}")
        check_utf8(t, name)  # the tokenizer would raise a bare TypeError
    return out


def is_utf8(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8 (text decoded with ``errors="surrogateescape"``, such as a
    file name that is not UTF-8, holds lone surrogates, which do not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: What :func:`check_utf8` advises for a text read from a source (decoded with surrogateescape somewhere).
SOURCE_ADVICE = "decode your source with errors='replace' or fix it"


def check_utf8(value: str, what: str, advice: str = SOURCE_ADVICE) -> None:
    """Raise :class:`InvalidInputError` naming ``what`` when ``value`` cannot be UTF-8 encoded (a
    lone surrogate, e.g. from a file decoded with ``errors="surrogateescape"``), ending with
    ``advice`` (a typed or pasted query: ``"fix the text"``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid UTF-8 text (a lone surrogate {value[exc.start:exc.end]!r} at position {exc.start}); "
            f"{advice}"
        ) from None


def _loaded_from(model: Any) -> Path | None:
    """The local folder a SentenceTransformer loaded without medrag came from, or None: its first
    module's transformers config records it (``_name_or_path``; a ``0_Transformer`` subfolder in the
    older layout), so a model passed already loaded keeps its folder's ``matryoshka.json``."""
    try:
        path = Path(model[0].auto_model.config._name_or_path).expanduser()
    except Exception:  # noqa: BLE001 - not a transformers-backed SentenceTransformer
        return None
    if path.name.startswith("0_") and (path.parent / "modules.json").is_file():
        path = path.parent
    return path if (path / "modules.json").is_file() else None


class MatryoshkaEmbeddings(Embeddings):
    """LangChain embeddings that return Matryoshka vectors truncated to one size.

    It implements :class:`medrag.encoder.MatryoshkaEncoder` (``encode_queries`` /
    ``encode_documents`` give full-size vectors; ``spec``, ``full_dim``, ``dims``, ``fingerprint``),
    the interface the store and the evaluation use.

    Args:
        model: a model spec for :func:`medrag.load_model` (``None``: medrag's default model,
            ``bundled:medrag-e5-small-fr``),
            or an already loaded ``SentenceTransformer``.
        dimension: the output size. An int among the allowed sizes; ``None`` or ``"max"`` for the
            full size; ``"balanced"`` (512) or ``"edge"`` (128), capped to the model; ``"auto"``
            for the smallest trained size whose recorded score is within ``max_quality_loss``
            of the best recorded score, normally the full size's (:func:`medrag.sizes.smallest_size_within`;
            needs ``matryoshka.json`` scores, as written by ``medrag finetune``).
        max_quality_loss: for ``"auto"``: the largest relative drop of the metric allowed
            (0.01 = the chosen size keeps at least 99% of the best size's NDCG@10).
        strict_dims: when True (default), only trained sizes are accepted; False allows any
            size from 1 to the full size.
        metadata: Matryoshka metadata to use instead of the model folder's ``matryoshka.json``.
        batch_size: encoding batch size.
        device: ``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when available (a loaded model given
            with a device is moved there; ``None`` leaves it where it is).
        show_progress: progress bar; ``None`` shows it for inputs of 256 texts or more when stderr is
            a terminal (``True`` draws it anywhere).
        query_prompt_name / document_prompt_name: override the prompt names taken from the model
            (default: ``"query"``, and the first non-empty of ``"passage"``, ``"document"``, ``"corpus"``).
        prompts: the prompts themselves, replacing the model's (a name -> text mapping, as
            sentence-transformers saves them): ``{"query": "query: ", "passage": "passage: "}``
            for an e5 model that was saved without them, ``{}`` for none (a model that medrag took for
            e5 by its name). sentence-transformers keeps prompts on the model, so a loaded
            ``SentenceTransformer`` you pass is changed. A store records the prompts its vectors
            were encoded with and refuses other ones (:class:`medrag.MatryoshkaChroma`).
        trust_remote_code: passed to :func:`medrag.load_model`.

    Attributes:
        dimension: the resolved output size (an int).
        full_dim: the model's full size.
        dims: the allowed sizes, descending.
        matryoshka_trained: whether the Matryoshka metadata says the model was trained from a
            base (its ``base_model``, which ``medrag finetune`` and the bundled adapters record;
            the plain base models have no ``matryoshka.json``, and ``medrag evaluate
            --write-metadata`` on a folder without one records scores only). Assign it to
            override.
    """

    @checked_arguments
    def __init__(
        self,
        model: "str | os.PathLike[str] | SentenceTransformer | None" = None,
        dimension: DimensionSpec = None,
        *,
        max_quality_loss: float = 0.01,
        strict_dims: bool = True,
        metadata: MatryoshkaMetadata | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        show_progress: bool | None = None,
        query_prompt_name: str | None = None,
        document_prompt_name: str | None = None,
        prompts: Mapping[str, str] | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        check_flag("trust_remote_code", trust_remote_code)  # before any model loads: "false" ran the model's code
        strict_dims = check_flag("strict_dims", strict_dims)
        check_flag("show_progress", show_progress, none=True)
        if model is None or isinstance(model, (str, os.PathLike)):
            model = load_model(model, device=device, trust_remote_code=trust_remote_code)
        elif not callable(getattr(model, "encode", None)):
            raise InvalidInputError(
                f"model must be a model spec (a path, 'bundled:<name>', a hub id), None for the embedded model, "
                f"or a loaded SentenceTransformer; got {type(model).__name__} {model!r}"
            )
        else:
            if getattr(model, "truncate_dim", None) is not None:  # it would read as the model's full size
                raise InvalidInputError(
                    f"this SentenceTransformer was loaded with truncate_dim={model.truncate_dim}: MatryoshkaEmbeddings "
                    f"truncates itself; load it without truncate_dim and pass dimension={model.truncate_dim}")
            if device is not None:  # it was ignored: the vectors were computed where the model was
                check_device(device)
                model.to(device)
        if metadata is not None and not isinstance(metadata, MatryoshkaMetadata):
            raise InvalidInputError(f"metadata must be a MatryoshkaMetadata (MatryoshkaMetadata.load(folder)), "
                                    f"got {type(metadata).__name__}")
        if isinstance(max_quality_loss, bool) or not isinstance(max_quality_loss, (int, float, np.integer, np.floating)) \
                or not 0 <= max_quality_loss < 1:
            raise InvalidInputError(f"max_quality_loss must be a number in [0, 1) (0.01 = 1%), got {max_quality_loss!r}")
        self.model = model
        self.spec: str = getattr(model, "medrag_spec", None) or type(model).__name__
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.full_dim = embedding_dim(model)
        self.metadata = metadata if metadata is not None else self._folder_metadata()
        if self.metadata is not None and self.metadata.full_dim != self.full_dim:
            raise MetadataError(
                f"matryoshka.json says full_dim={self.metadata.full_dim} but the model outputs {self.full_dim}"
            )
        self.dims = self.metadata.dims if self.metadata is not None else default_dims(self.full_dim)
        self.matryoshka_trained = self.metadata is not None and self.metadata.base_model is not None
        self.strict_dims = strict_dims
        self.max_quality_loss = max_quality_loss
        if prompts is not None:
            _set_prompts(model, prompts)
        self.query_prompt_name = self._pick_prompt(query_prompt_name, QUERY_PROMPT_NAMES)
        self.document_prompt_name = self._pick_prompt(document_prompt_name, DOCUMENT_PROMPT_NAMES)
        if prompts is None and query_prompt_name is None and self.query_prompt_name is None:
            self._warn_unused_prompts()
        self.dimension = self.resolve_dimension(dimension)
        self._warn_if_untrained()
        self._fingerprint: str | None = None
        self._legacy_fingerprints: tuple[str, ...] | None = None
        self._warned_long = False

    # ------------------------------------------------------------------ sizes

    def resolve_dimension(self, dimension: DimensionSpec) -> int:
        """Turn a size request (int, preset name, ``"auto"``, ``None``) into an allowed size."""
        if dimension is None or dimension == "max":
            return self.full_dim
        if isinstance(dimension, str):
            if dimension == "auto":
                return self._auto_dimension()
            if dimension in PRESETS:
                return self._preset_dimension(dimension)
            raise DimensionError(
                f"unknown dimension {dimension!r}: use an int, 'auto', or one of {sorted(PRESETS)}"
            )
        if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)):
            raise DimensionError(f"dimension must be an int or a preset name, got {type(dimension).__name__}")
        dimension = int(dimension)
        if not 1 <= dimension <= self.full_dim:
            raise DimensionError(f"dimension {dimension} is outside 1..{self.full_dim} (the model's full size)")
        if self.strict_dims and dimension not in self.dims:
            what = ("a trained Matryoshka size of this model" if self.matryoshka_trained else
                    "one of the sizes this model allows (its matryoshka.json's)" if self.metadata is not None else
                    "one of the sizes this model allows (the seed report's sizes up to its full size: it "
                    "records no Matryoshka training, so none of them below the full size was trained)")
            raise DimensionError(
                f"dimension {dimension} is not {what}; choose one of "
                f"{self.dims}, or pass strict_dims=False to truncate to another size anyway"
            )
        return dimension

    def _warn_if_untrained(self) -> None:
        """Truncating a model no Matryoshka loss trained loses much of its quality (the base e5-small:
        NDCG@10 0.51 at 64 dims vs 0.82 at 384 on the sample), and nothing said so (user tryout)."""
        if self.dimension < self.full_dim and not self.matryoshka_trained:
            logger.warning(
                "%s records no Matryoshka training (no base_model in a matryoshka.json): its first %d of %d "
                "coordinates may keep little of its quality. Measure each size with `medrag evaluate`, or "
                "fine-tune the model with `medrag finetune`", self.spec, self.dimension, self.full_dim)

    def _preset_dimension(self, name: str) -> int:
        """A preset's size: the model's measured recommendation for that tier when its
        ``matryoshka.json`` has one, else the seed's size (512 / 128), capped to the model and
        lowered to the nearest trained size."""
        recs = self.metadata.recommendations if self.metadata is not None else {}
        if name in recs and int(recs[name]) in self.dims:
            return int(recs[name])
        target = min(int(PRESETS[name] or self.full_dim), self.full_dim)
        return max((d for d in self.dims if d <= target), default=min(self.dims))

    def _auto_dimension(self) -> int:
        meta = self.metadata
        if meta is None or not meta.scores:
            raise MetadataError(
                "dimension='auto' needs per-size scores in the model's matryoshka.json (written by "
                "`medrag finetune` or `medrag evaluate --write-metadata`); pass an explicit size instead"
            )
        if not 0 <= self.max_quality_loss < 1:
            raise InvalidInputError(f"max_quality_loss must be in [0, 1), got {self.max_quality_loss}")
        scores = {d: meta.score(d) for d in meta.scores}
        chosen = smallest_size_within(scores, self.max_quality_loss)
        best = max(scores, key=lambda d: (scores[d], d))
        logger.info("dimension='auto' chose %d (%s %.4f vs %.4f at %d, tolerance %.1f%%)", chosen, meta.metric,
                    scores[chosen], scores[best], best, 100 * self.max_quality_loss)
        return chosen

    def with_dimension(self, dimension: DimensionSpec) -> "MatryoshkaEmbeddings":
        """A copy sharing the same loaded model, at another size."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.dimension = self.resolve_dimension(dimension)
        if clone.dimension < self.dimension:
            clone._warn_if_untrained()
        return clone

    @property
    def fingerprint(self) -> str:
        """:func:`medrag.models.model_fingerprint` of the model (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    @property
    def legacy_fingerprints(self) -> tuple[str, ...]:
        """Older fingerprints of this same model (:func:`medrag.models.legacy_model_fingerprints`), which
        collections and teacher caches written by earlier medrag versions recorded; none that equals
        :attr:`fingerprint` (computed once, as :attr:`fingerprint` is)."""
        if self._legacy_fingerprints is None:
            self._legacy_fingerprints = legacy_model_fingerprints(self.model)
        return self._legacy_fingerprints

    # ------------------------------------------------------------------ LangChain API

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (with the document prompt) at :attr:`dimension`."""
        return truncate_embeddings(self.encode_documents(texts), self.dimension).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (with the query prompt) at :attr:`dimension`."""
        if not isinstance(text, str) or is_blank(text):
            raise InvalidInputError(f"the query must be a non-empty string, got {text!r}"[:200])
        check_utf8(text, "the query", "fix the text")  # not "text at index 0 ... decode your source" (add_texts')
        return truncate_embeddings(self.encode_queries([text]), self.dimension)[0].tolist()

    # ------------------------------------------------------------------ numpy API

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Full-size, unit-norm float32 vectors of passages, shape ``(n, full_dim)``.

        Derive any smaller size with :func:`truncate_embeddings`: one model call serves all sizes.
        """
        return self._encode(texts, self.document_prompt_name)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Full-size, unit-norm float32 vectors of queries, shape ``(n, full_dim)``."""
        return self._encode(texts, self.query_prompt_name, query=True)

    def check_texts(self, texts: Sequence[str], *, query: bool = False) -> list[str]:
        """Refuse what this model cannot encode, naming the first bad text by its index in ``texts``.

        What :func:`validate_texts` refuses, and a text that is only the model's prompt (``"passage: "``
        typed by hand: the prompt is not added twice, and nothing is left to encode).
        :class:`~medrag.MatryoshkaChroma` calls it on a whole ``add_texts`` call before its first
        write, so such a text deep in a large call stores nothing, instead of failing at its batch.

        Args:
            texts: the texts.
            query: check them as queries (the query prompt) rather than passages.

        Returns:
            ``texts`` as a list.

        Raises:
            InvalidInputError: a bad text (its index is named).
        """
        texts = validate_texts(texts)
        self._without_prompt(texts, self.query_prompt_name if query else self.document_prompt_name)
        return texts

    def _without_prompt(self, texts: list[str], prompt_name: str | None) -> list[str]:
        """``texts`` with the model's prompt removed where it was written by hand ("query: ..." as
        other e5 wrappers want it: sentence-transformers adds it once more); an error naming the
        first text that is only the prompt."""
        prefix = self._prompt_text(prompt_name)
        if not (prefix.strip() and any(t.startswith(prefix) for t in texts)):
            return texts
        stripped = [t[len(prefix):] if t.startswith(prefix) else t for t in texts]
        empty = next((i for i, t in enumerate(stripped) if is_blank(t)), None)
        if empty is not None:  # "query: " alone: the empty text validate_texts refuses
            where = "the text" if len(texts) == 1 else f"text at index {empty}"  # one: a query, most often
            raise InvalidInputError(f"{where} is only the prompt {prefix.strip()!r}: it has no content")
        return stripped

    def _encode(self, texts: Sequence[str], prompt_name: str | None, *, query: bool = False) -> np.ndarray:
        texts = validate_texts(texts)
        if not texts:
            return np.zeros((0, self.full_dim), dtype=np.float32)
        stripped = self._without_prompt(texts, prompt_name)
        if stripped is not texts:
            logger.info("%d text(s) already start with the prompt %r: it is not added twice",
                        sum(a != b for a, b in zip(texts, stripped)), self._prompt_text(prompt_name))
            texts = stripped
        with model_lock(self.model):  # the truncation check's tokenizer call, then the encode: one at a time
            self._warn_if_truncated(texts, prompt_name, query=query)
            return encode_texts(self.model, texts, prompt_name=prompt_name, batch_size=self.batch_size,
                                show_progress=self.show_progress)

    def _prompt_text(self, prompt_name: str | None) -> str:
        """The prompt sentence-transformers puts before the texts encoded with ``prompt_name``: that
        prompt, or without one the model's ``default_prompt_name``'s (which it then applies)."""
        prompts = self.model.prompts or {}
        return prompts.get(prompt_name or getattr(self.model, "default_prompt_name", None) or "", "")

    @property
    def prompt_texts(self) -> tuple[str, str]:
        """The (query, passage) prompts put before the texts, ``""`` where none: they decide the
        vectors as much as the weights do, so a store records them beside the model's fingerprint."""
        return self._prompt_text(self.query_prompt_name), self._prompt_text(self.document_prompt_name)

    def _warn_unused_prompts(self) -> None:
        """A model whose saved prompts have other names than medrag's (``s2p_query``, an instruction)
        was encoded without any, in silence (user tryout)."""
        picked = {self.document_prompt_name, getattr(self.model, "default_prompt_name", None)}
        unused = sorted(n for n, text in (self.model.prompts or {}).items() if text and n not in picked)
        if unused and not self._prompt_text(None):  # a default prompt goes before queries: not "without a prompt"
            logger.warning("%s has the prompts %s but none named 'query': queries are encoded without a prompt. "
                           "If the model expects one, pass query_prompt_name=%r (and document_prompt_name= for "
                           "passages; from the shell, medrag index and medrag evaluate take --query-prompt-name "
                           "and --document-prompt-name), or prompts={'query': ..., 'passage': ...}",
                           self.spec, unused, unused[0])

    def _pick_prompt(self, override: str | None, candidates: tuple[str, ...]) -> str | None:
        prompts = self.model.prompts or {}
        if override is not None:
            if override not in prompts:
                raise InvalidInputError(f"prompt name {override!r} is not among the model's prompts {sorted(prompts)}")
            return override
        return pick_prompt_name(prompts, candidates)

    @property
    def max_tokens(self) -> int | None:
        """The model's token window (its ``max_seq_length``, prompt and special tokens included):
        the tokens of a text beyond it are not encoded. ``None`` when the model has no tokenizer or
        does not say."""
        max_len = getattr(self.model, "max_seq_length", None)
        if not max_len or getattr(self.model, "tokenizer", None) is None:
            return None
        return int(max_len)

    def count_tokens(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> list[int]:
        """How many tokens of the model's window each text takes when encoded as a ``kind``: its
        prompt (``passage: ``, ``query: ``) and the special tokens included, before truncation. A
        text longer than :attr:`max_tokens` loses its end (:func:`medrag.chunking.chunk_text` cuts
        chunks to fit).

        Example::

            >>> emb = MatryoshkaEmbeddings()
            >>> emb.count_tokens(["La metformine est contre-indiquée."])[0] <= emb.max_tokens
            True

        Raises:
            InvalidInputError: ``kind`` is neither ``"document"`` nor ``"query"``, or the model
                has no tokenizer (:attr:`max_tokens` is ``None``).
        """
        if kind not in ("document", "query"):
            raise InvalidInputError(f"kind must be 'document' or 'query', got {kind!r}")
        if self.max_tokens is None:
            raise InvalidInputError(f"the model {self.spec} has no tokenizer with a max_seq_length: its tokens "
                                    "cannot be counted")
        texts = validate_texts(texts)
        prefix = self._prompt_text(self.document_prompt_name if kind == "document" else self.query_prompt_name)
        # a text that already starts with the prompt gets it once (as _encode feeds it)
        fed = [t if prefix.strip() and t.startswith(prefix) else prefix + t for t in texts]
        with model_lock(self.model):
            return self._token_counts(fed)

    def _token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of ``texts`` as given (prompt included by the caller); hold :func:`model_lock`: the
        fast tokenizer's truncation settings are shared state."""
        if not texts:
            return []
        # verbose=False: counting the tokens of a long text is not a request to encode it whole
        return [len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]

    def _warn_if_truncated(self, texts: list[str], prompt_name: str | None, *, query: bool = False) -> None:
        max_len = self.max_tokens
        if max_len is None:
            return
        prefix = self._prompt_text(prompt_name)
        # A token covers at least one UTF-8 byte (a byte-level BPE splits "é" into two tokens: a count
        # of characters would miss it), so only texts of more than max_len bytes can overflow.
        long = [prefix + t for t in texts if len((prefix + t).encode("utf-8")) > max_len - 2]
        if not long:
            return
        n = sum(1 for n_tok in self._token_counts(long) if n_tok > max_len)
        if n:
            advice = ("only their first tokens were searched with; shorten the query (a question, not a document)"
                      if query else "split long passages into chunks to embed all of their content (medrag index "
                      "and medrag.indexing.index_corpus cut their chunks to the model's window)")
            warnings.warn(
                f"{n} {'query' if query else 'text'}(s) exceed the model's max_seq_length of {max_len} tokens "
                f"and were truncated; {advice}",
                stacklevel=_first_caller_outside_medrag(),
            )

    def _folder_metadata(self) -> MatryoshkaMetadata | None:
        spec = getattr(self.model, "medrag_folder", None) or getattr(self.model, "medrag_spec", None)
        if spec and Path(spec).expanduser().is_dir():
            return MatryoshkaMetadata.load(Path(spec).expanduser())
        folder = _loaded_from(self.model)
        return MatryoshkaMetadata.load(folder) if folder is not None else None

    def __repr__(self) -> str:
        return f"MatryoshkaEmbeddings(model={self.spec!r}, dimension={self.dimension}, full_dim={self.full_dim})"


def adopt_prompts(embeddings: MatryoshkaEmbeddings, prompts: Mapping[str, str]) -> None:
    """Give ``embeddings`` (and its model) ``prompts``, as ``MatryoshkaEmbeddings(..., prompts=prompts)``
    would have: ``medrag index``/``search`` open an existing collection with the prompts it records."""
    if embeddings.prompt_texts == (prompts.get("query", ""), prompts.get("passage", "")):
        return
    _set_prompts(embeddings.model, prompts)
    embeddings.query_prompt_name = embeddings._pick_prompt(None, QUERY_PROMPT_NAMES)
    embeddings.document_prompt_name = embeddings._pick_prompt(None, DOCUMENT_PROMPT_NAMES)
    logger.info("%s: the collection's prompts used (%r, %r)", embeddings.spec, *embeddings.prompt_texts)


def _set_prompts(model: "SentenceTransformer", prompts: Mapping[str, str]) -> None:
    """Replace ``model``'s prompts with ``prompts`` (its default prompt too, if ``prompts`` lacks it)."""
    if not isinstance(prompts, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise InvalidInputError(f"prompts must map prompt names to prompt texts (str -> str), e.g. "
                                f"{{'query': 'query: ', 'passage': 'passage: '}}, or be {{}} for none; got {prompts!r}"[:300])
    model.prompts = dict(prompts)
    if getattr(model, "default_prompt_name", None) not in model.prompts:
        model.default_prompt_name = None
