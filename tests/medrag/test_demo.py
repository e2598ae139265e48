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
    # the presets of the same names are fixed sizes: "edge 256" read as dimension="edge" gave 128 (user tryout)
    assert "the presets 'balanced'/'edge' are fixed sizes (512/128, capped to the model)" in out
    lexical_ms = [float(line.split(" ms lexical")[0].rsplit(", ", 1)[1]) for line in out.splitlines()
                  if "ms lexical" in line]
    assert len(lexical_ms) == len(QUESTIONS) and lexical_ms[0] < 100  # the BM25 index loaded before the timing
    # how to query the store it built ("no collection 'medrag'": the demo's is medrag-demo) (user tryout)
    command = out.strip().splitlines()[-1]
    assert command.startswith("Search it: medrag search") and "--collection medrag-demo" in command
    import shlex

    assert main(shlex.split(command.removeprefix("Search it: medrag "))) == 0
    assert "passage_id" in capsys.readouterr().out
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
    assert main(["demo", "--model", str(other), "--dir", store, "--k", "1", "--rebuild"]) == 0
    # the dropped collections' vector copies and lexical indexes went with them (they piled up: audit)
    import sqlite3
    from pathlib import Path

    with sqlite3.connect(Path(store) / "medrag_vectors.sqlite3") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT collection) FROM vectors").fetchone() == (193, 1)
    assert len(list((Path(store) / "medrag-lexical").iterdir())) == 1


def test_demo_rebuild_refuses_a_store_another_process_has_open(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """--rebuild emptied the demo collection under a process that had it open, then said "nothing
    was written" (the raw client's delete ran before medrag's lock check) (audit)."""
    import subprocess
    import sys

    import chromadb
    import pytest

    from tests.conftest import REPO

    store = tmp_path / "store"
    assert main(["demo", "--model", str(tiny_model_dir), "--dir", str(store), "--k", "1"]) == 0
    capsys.readouterr()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]); from medrag._store_lock import "
         "DirectoryLock; DirectoryLock(sys.argv[1]).acquire(); print('ready', flush=True); sys.stdin.read()",
         str(store), str(REPO)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        import medrag.embeddings

        monkeypatch.setattr(medrag.embeddings, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        assert main(["demo", "--model", str(tiny_model_dir), "--dir", str(store), "--rebuild"]) == 1
        assert f"another process (pid {holder.pid}) has the embedded Chroma store" in capsys.readouterr().err
    finally:
        holder.communicate("", timeout=60)
    assert chromadb.PersistentClient(str(store)).get_collection("medrag-demo").count() == 193
    with pytest.raises(SystemExit) as stop:  # a usage error, as every option given an empty value
        main(["demo", "--dir", ""])
    assert stop.value.code == 2 and "--dir is empty" in capsys.readouterr().err


def test_demo_finetune_prints_the_before_after_table(tiny_model_dir, tmp_path, capsys):
    """The fine-tune dropped the starting model's sizes below 64 (the default model's 32), and its
    "Initial" column, scored against the eval answers only, read as contradicting the table above
    (all 193 passages) without a word (audit)."""
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "matryoshka.json").write_text(json.dumps({"full_dim": 128, "dims": [128, 64, 32]}))
    out_dir = tmp_path / "ft"
    args = ["demo", "--model", str(model), "--dir", str(tmp_path / "store"), "--k", "1",
            "--finetune", "--finetune-dir", str(out_dir), "--epochs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Fine-tuning on the sample's train split (324 pairs" in out
    assert "the table above ranks all 193 passages, so its scores are lower" in out
    assert "| Dimension | Initial ndcg@10 | Final ndcg@10 | Gain |" in out
    assert json.loads((out_dir / "matryoshka.json").read_text())["dims"] == [128, 64, 32]


def test_a_fine_tune_that_lowers_the_full_size_score_is_said_to():
    """The demo's short fine-tune lowered the full-size score (-1.0%) and only the table showed it (user tryout)."""
    from medrag.demo import full_size_verdict

    before = {384: {"ndcg@10": 0.877}, 64: {"ndcg@10": 0.70}}
    line = full_size_verdict(before, {384: {"ndcg@10": 0.867}, 64: {"ndcg@10": 0.75}})
    assert line.startswith("At full size (384) the fine-tuned model scores lower than its start (0.877 -> 0.867)")
    assert full_size_verdict(before, {384: {"ndcg@10": 0.880}, 64: {"ndcg@10": 0.60}}) is None


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
