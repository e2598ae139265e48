from medrag.cli import main
from medrag.demo import QUESTIONS


def test_demo_indexes_then_reuses_the_store(tiny_model_dir, tmp_path, capsys):
    args = ["demo", "--model", str(tiny_model_dir), "--dir", str(tmp_path / "store"), "--k", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Indexed 193 passages" in out
    for q in QUESTIONS:
        assert q in out
    assert out.count("stage 1 (coarse)") == len(QUESTIONS)
    assert out.count("hybrid (BM25 weight") == len(QUESTIONS) and "BM25 rank" in out
    assert "Dense vs lexical (BM25) vs hybrid" in out and "hybrid w=" in out
    assert "| 128 |" in out and "| 64 |" in out and "Recommended sizes" in out
    assert main(args) == 0
    assert "Reusing the demo store" in capsys.readouterr().out


def test_demo_rebuilds_its_store_when_the_model_changed(tiny_model_dir, tmp_path, capsys):
    """The demo owns its store: a store built with another model (a previous default) is rebuilt."""
    import shutil

    import torch

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    import medrag

    m = medrag.load_model(other, device="cpu")
    with torch.no_grad():
        next(m.parameters()).add_(0.5)
    m.save(str(other))
    store = str(tmp_path / "store")
    assert main(["demo", "--model", str(tiny_model_dir), "--dir", store, "--k", "1"]) == 0
    capsys.readouterr()
    assert main(["demo", "--model", str(other), "--dir", store, "--k", "1"]) == 0
    out = capsys.readouterr().out
    assert "was built with another model; rebuilding it" in out and "Indexed 193 passages" in out
    assert main(["demo", "--model", str(other), "--dir", store, "--k", "1"]) == 0
    assert "Reusing the demo store" in capsys.readouterr().out


def test_demo_finetune_prints_the_before_after_table(tiny_model_dir, tmp_path, capsys):
    out_dir = tmp_path / "ft"
    args = ["demo", "--model", str(tiny_model_dir), "--dir", str(tmp_path / "store"), "--k", "1",
            "--finetune", "--finetune-dir", str(out_dir), "--epochs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Fine-tuning on the sample's train split (324 pairs" in out
    assert "| Dimension | Initial ndcg@10 | Final ndcg@10 | Gain |" in out
    assert (out_dir / "matryoshka.json").is_file()


def test_a_new_sample_version_updates_the_reused_store(tiny_embeddings, tmp_path, capsys):
    """A demo store built from an older sample is not reused as is: changed passages are re-indexed
    (their text and version), passages gone from the sample are removed, unchanged ones are kept."""
    import json

    from medrag.demo import build_store
    from medrag.qa.sample import load_sample_corpus

    def sample(name, texts, header):
        lines = [json.dumps(header)] if header else []
        lines += [json.dumps({"passage_id": pid, "topic": "t", "split": "train", "passage": text,
                              "questions": [f"Question {pid} ?"]}) for pid, text in texts.items()]
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return load_sample_corpus(tmp_path / name)

    v1 = sample("v1.jsonl", {"a-001": "Ancien texte sur la TSH.", "a-002": "Texte sur la CRP.",
                             "a-003": "Passage retiré."}, None)
    v2 = sample("v2.jsonl", {"a-001": "Texte corrigé sur la TSH.", "a-002": "Texte sur la CRP."},
                {"format_version": 2, "sample_version": 2})
    folder = tmp_path / "store"
    build_store(tiny_embeddings, v1, folder)
    assert "Indexed 3 passages" in capsys.readouterr().out
    build_store(tiny_embeddings, v1, folder)
    assert "Reusing the demo store" in capsys.readouterr().out

    store = build_store(tiny_embeddings, v2, folder)
    out = capsys.readouterr().out
    assert "holds sample v1: updating it to v2" in out and "1 removed" in out and "Indexed 2 passages" in out
    assert len(store) == 2
    docs = {d.id: d for d in store.get_by_ids(["a-001", "a-002", "a-003"])}
    assert set(docs) == {"a-001", "a-002"}
    assert docs["a-001"].page_content == "Texte corrigé sur la TSH."
    assert {d.metadata["sample_version"] for d in docs.values()} == {2}
    build_store(tiny_embeddings, v2, folder)
    assert "Reusing the demo store" in capsys.readouterr().out
