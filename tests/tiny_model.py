"""A tiny randomly initialised BERT-style sentence-transformers model, built in seconds.

Unit tests use it instead of a real model: it has a real WordPiece tokenizer (``tokenizers``),
mean pooling and normalisation, e5-style prompts, and the
empty ``"document"`` prompt that sentence-transformers >= 6.2 adds (so tests catch a
document prompt that silently disappears). Its vectors carry no meaning.

The model is the same in every process and on every machine: its vocabulary is built here in a
fixed order (every character of :data:`SENTENCES` and every ASCII letter and digit, alone and as
a ``##`` continuation, then every word of :data:`SENTENCES`, sorted), not trained, because ``tokenizers``' WordPiece trainer breaks ties
between equally frequent merges differently from one process to the next, which changed the
token ids (and so every test vector) from run to run.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

SENTENCES = [
    "Quels sont les symptômes du diabète ?",
    "La glycémie à jeun normale est comprise entre 0,70 et 1,10 g/L.",
    "Une hémoglobine glyquée supérieure à 6,5 % confirme le diagnostic de diabète.",
    "L'hypertension artérielle se définit par une pression supérieure à 140/90 mmHg.",
    "La créatinine permet d'estimer le débit de filtration glomérulaire.",
    "Une ferritine basse traduit une carence en fer.",
    "La TSH élevée oriente vers une hypothyroïdie.",
    "La CRP augmente lors d'une inflammation ou d'une infection bactérienne.",
    "query: passage: le la les un une des de du et est en pour par sur avec dans",
] * 20


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_vocabulary() -> dict[str, int]:
    """The tiny model's WordPiece vocabulary, in a fixed order: special tokens, then every character
    of :data:`SENTENCES` and every ASCII letter and digit (alone and as ``##`` continuation, so any
    such word is split into known pieces, not ``[UNK]``), then the sentences' whole words, sorted."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for sentence in dict.fromkeys(SENTENCES):
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)))
    chars = sorted({c for w in words for c in w} | set(string.ascii_lowercase + string.digits))
    tokens = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars] + sorted(w for w in words if len(w) > 1)
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def build_tiny_model(path: Path, hidden: int = 128, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny sentence-transformers model folder at ``path`` and return it."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordPiece(tiny_vocabulary(), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                     cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                     model_max_length=64)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64)
    raw = path / "_hf"
    BertModel(config).save_pretrained(raw)
    hf_tok.save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=64)
    model = SentenceTransformer(
        modules=[transformer, Pooling(hidden, pooling_mode="mean"), Normalize()],
        prompts={"query": "query: ", "passage": "passage: ", "document": ""},
        device="cpu",
    )
    model.save(str(path))
    cfg = path / "config_sentence_transformers.json"
    data = json.loads(cfg.read_text())
    data["prompts"] = {"query": "query: ", "passage": "passage: ", "document": ""}
    cfg.write_text(json.dumps(data))
    return path
