"""``medrag search``: the shell's way to query what ``medrag index`` built."""

from __future__ import annotations

import json

import pytest

from medrag.cli import main


def _one_line(capsys, argv, expected) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


@pytest.fixture
def indexed(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (
        {"id": "fer", "cat": "hema", "text": "Une ferritine basse traduit une carence en fer."},
        {"id": "tsh", "cat": "endo", "text": "La TSH élevée oriente vers une hypothyroïdie."},
        {"id": "crp", "cat": "inflam", "text": "La CRP augmente lors d'une inflammation aiguë."})))
    db = tmp_path / "db"
    assert main(["index", str(src), "--persist-dir", str(db), "--model", str(tiny_model_dir), "--id-field", "id",
                 "--metadata-fields", "cat", "--no-progress"]) == 0
    capsys.readouterr()
    return db


def test_search_uses_the_model_the_collection_records(indexed, capsys) -> None:
    """There was no way to query a store from the shell (``medrag search``: "invalid choice")."""
    assert main(["search", "Que signifie une ferritine basse ?", "--persist-dir", str(indexed), "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("[cosine ") == 2 and "id=" in out
    assert main(["search", "TSH élevée", "--persist-dir", str(indexed), "--hybrid", "--k", "3",
                 "--filter", '{"cat": "endo"}', "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["metadata"]["id"] for r in rows] == ["tsh"] and rows[0]["rank"] == 1
    assert main(["search", "TSH élevée", "--persist-dir", str(indexed), "--hybrid", "--k", "2",
                 "--lexical-weight", "auto"]) == 0  # a weight per query
    assert capsys.readouterr().out.count("[fused score ") == 2


def test_hybrid_search_says_when_bm25_read_a_word_as_another(indexed, capsys) -> None:
    """A word no passage holds is scored as the held term one edit away (``ferritinne`` ->
    ferritine); a correct word the store lacks too (``cortisol`` -> cortisone), so the shell names
    each word read so, on stderr (the hits on stdout stay parseable with --json)."""
    assert main(["search", "ferritinne basse", "--persist-dir", str(indexed), "--hybrid", "--k", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rank"] == 1
    assert "no passage holds 'ferritinne'; BM25 read 'ferritinne' as the indexed term 'ferritin'" in captured.err
    assert main(["search", "ferritine basse", "--persist-dir", str(indexed), "--hybrid", "--k", "1"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["search", "ferritinne basse", "--persist-dir", str(indexed), "--k", "1"]) == 0  # dense: no BM25
    assert capsys.readouterr().err == ""
    assert main(["search", "ferritinne basse", "--persist-dir", str(indexed), "--k", "1", "--hybrid",
                 "--lexical-weight", "0"]) == 0  # BM25 weighs nothing: nothing to say
    assert capsys.readouterr().err == ""


def test_search_errors_are_one_line_and_create_nothing(indexed, tmp_path, capsys, monkeypatch) -> None:
    import medrag.embeddings

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    _one_line(capsys, ["search", "x", "--persist-dir", str(tmp_path / "none")], "holds no Chroma store")
    assert not (tmp_path / "none").exists()
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--collection", "nope"], "no collection 'nope'")
    _one_line(capsys, ["search", " ", "--persist-dir", str(indexed)], "query is empty")
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--k", "0"], "--k must be")
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--filter", "{cat: 1}"], "not valid JSON")
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--lexical-weight", "0.5"], "only used with --hybrid")
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--lexical-weight", "auto"], "only used with --hybrid")
    # these three failed only after the model had loaded (audit)
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--candidates", "1", "--k", "3"],
              "--candidates (1) must be >= --k (3)")
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--k", "99999999999"], "--k / --candidates must be")
    # the store's own check, named as the command line has it (one check for both: check_search_sizes)
    _one_line(capsys, ["search", "x", "--persist-dir", str(indexed), "--candidates", "0"], "--candidates (0) must be >= --k")
    _one_line(capsys, ["search", "fer \udcff", "--persist-dir", str(indexed)], "the query is not valid UTF-8 text")


def test_search_opens_what_index_built_whatever_its_settings(tiny_model_dir, tmp_path, capsys, monkeypatch) -> None:
    """A collection indexed with --coarse-dim 32 was refused (search opened it at 64); a model folder
    named with a capital was taken for a class name; a relative model path recorded by the index
    failed from another folder (it is recorded absolute now; a moved model is named)."""
    import shutil

    model = tmp_path / "MedModel"
    shutil.copytree(tiny_model_dir, model)
    (tmp_path / "a.jsonl").write_text('{"text": "Une ferritine basse traduit une carence en fer."}\n')
    monkeypatch.chdir(tmp_path)
    assert main(["index", "a.jsonl", "--persist-dir", "db", "--model", "MedModel", "--coarse-dim", "32",
                 "--no-progress"]) == 0
    assert main(["search", "ferritine", "--persist-dir", "db"]) == 0
    assert "[cosine " in capsys.readouterr().out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["search", "ferritine", "--persist-dir", "../db"]) == 0  # the index recorded the absolute path
    moved = tmp_path / "moved"
    model.rename(moved)
    _one_line(capsys, ["search", "ferritine", "--persist-dir", "../db"],
              f"the collection records the model {str(model.resolve())!r}, which does not load from here")
    assert main(["search", "ferritine", "--persist-dir", "../db", "--model", str(moved)]) == 0


def test_another_model_is_refused_with_the_shells_advice(indexed, tmp_path, capsys) -> None:
    """The refusal ended with the Python API's advice (``MatryoshkaChroma.reindex``); from the shell,
    leaving out --model opens the collection with the model it records (December 5)."""
    from tests.tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "other-model", seed=1)
    capsys.readouterr()  # the build's own progress bars
    _one_line(capsys, ["search", "ferritine", "--persist-dir", str(indexed), "--model", str(other)],
              "From the shell: leave out --model")


def test_search_and_index_open_a_store_of_a_bundled_models_earlier_weights(indexed, tiny_model_dir, tmp_path, capsys,
                                                                           monkeypatch, caplog) -> None:
    """A store built with medrag-e5-small-fr before December 6 records that name; its weights now ship as
    -head. `medrag search`/`index` without --model loaded the name's new weights and were refused, with the
    advice to leave out --model (user tryout)."""
    import chromadb

    import medrag.adapters
    from medrag.store import CONTRACT_KEYS

    client = chromadb.PersistentClient(path=str(indexed))
    col = client.get_collection("medrag")
    recorded_fp = col.metadata[CONTRACT_KEYS["fingerprint"]]
    col.modify(metadata={**col.metadata, CONTRACT_KEYS["model"]: "bundled:medrag-e5-small-fr"})  # as an old store
    del client
    monkeypatch.setattr(medrag.adapters, "former_weights_spec",  # the tiny model plays the weights shipped on
                        lambda spec, fp, root=None: str(tiny_model_dir)
                        if (spec, fp) == ("bundled:medrag-e5-small-fr", recorded_fp) else None)
    with caplog.at_level("WARNING", logger="medrag.command"):
        assert main(["search", "ferritine basse", "--persist-dir", str(indexed), "--k", "1"]) == 0
    assert "Une ferritine basse" in capsys.readouterr().out
    assert "earlier weights of bundled:medrag-e5-small-fr" in caplog.text
    src = tmp_path / "more.jsonl"
    src.write_text(json.dumps({"id": "na", "text": "Une hyponatrémie se corrige lentement."}, ensure_ascii=False) + "\n")
    assert main(["index", str(src), "--persist-dir", str(indexed), "--id-field", "id", "--no-progress"]) == 0
    col = chromadb.PersistentClient(path=str(indexed)).get_collection("medrag")
    assert col.count() == 4
    assert col.metadata[CONTRACT_KEYS["model"]] == str(tiny_model_dir)  # the name that loads these weights now


def test_the_text_output_names_the_file_and_chunk_before_a_long_folder() -> None:
    """The metadata line was cut at 120 characters with the folder first: a share's long path hid the
    file name (user tryout)."""
    from medrag.searching import _short

    line = _short({"folder": "/mnt/partage/" + "protocoles_valides_" * 8, "source": "sub/b12.txt", "doc": "k",
                   "chunk": 3, "service": "cardio"})
    assert line.startswith("(source=sub/b12.txt, chunk=3, service=cardio, folder=/mnt/partage/protocoles")
    assert line.endswith("...)") and "doc=" not in line
    assert _short({"id": "tsh"}) == "(id=tsh)" and _short({}) == ""


def test_search_reads_queries_from_stdin_and_json_names_the_score_kind(indexed, capsys, caplog, monkeypatch) -> None:
    """A script piped its queries (`-` searched the text "-"), thresholded `score` and got fused scores
    once --hybrid was added, and "?" printed a passage with exit code 0 (user tryout)."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("ferritine basse\n\n  TSH   élevée \n"))
    assert main(["search", "-", "--persist-dir", str(indexed), "--k", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["query"], r["rank"], r["score_kind"]) for r in rows] == [("ferritine basse", 1, "cosine"),
                                                                       ("TSH élevée", 1, "cosine")]
    monkeypatch.setattr("sys.stdin", io.StringIO("ferritine\nCRP\n"))
    assert main(["search", "-", "--persist-dir", str(indexed), "--k", "1", "--hybrid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("query 1: ferritine\n") and "\nquery 2: CRP\n" in out and out.count("[fused score ") == 2
    assert main(["search", "CRP", "--persist-dir", str(indexed), "--k", "1", "--hybrid", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score_kind"] == "fused"
    monkeypatch.setattr("sys.stdin", io.StringIO("\n \n"))
    _one_line(capsys, ["search", "-", "--persist-dir", str(indexed)], "no query on stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO("\ufefffer\n\n---\nCRP\n"))  # a line without a word: skipped, said
    with caplog.at_level("WARNING", logger="medrag.searching"):  # with the file's line, blank lines counted
        assert main(["search", "-", "--persist-dir", str(indexed), "--k", "1", "--json"]) == 0
    assert [json.loads(line)["query"] for line in capsys.readouterr().out.splitlines()] == ["fer", "CRP"]
    assert "stdin line 3: the query '---' holds no word nor number: skipped" in caplog.text
    monkeypatch.setattr("sys.stdin", io.StringIO("?\n---\n"))
    _one_line(capsys, ["search", "-", "--persist-dir", str(indexed)], "no query on stdin holds a word or a number")
    monkeypatch.setattr("sys.stdin", io.StringIO("\ufefffer\n"))  # a BOM is no part of the query
    assert main(["search", "-", "--persist-dir", str(indexed), "--k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["query"] == "fer"
    _one_line(capsys, ["search", "?", "--persist-dir", str(indexed)], "the query '?' holds no word nor number")
    with pytest.raises(SystemExit) as exit_:
        main(["search", "-CRP", "--persist-dir", str(indexed)])
    assert exit_.value.code == 2 and "goes after '--'" in capsys.readouterr().err
    assert main(["search", "--persist-dir", str(indexed), "--k", "1", "--", "-CRP"]) == 0


def test_a_markdown_chunks_section_is_printed_whole_on_its_own_line(tiny_model_dir, tmp_path, capsys) -> None:
    """The metadata line is cut at 120 characters: a long heading trail could not be pasted into
    --filter (user tryout). It is printed whole, and --filter on it finds the chunk."""
    folder = tmp_path / "vault"
    folder.mkdir()
    trail = "Protocole régional de prise en charge des hyperkaliémies sévères de l'adulte > Kayexalate"
    (folder / "p.md").write_text("# Protocole régional de prise en charge des hyperkaliémies sévères de l'adulte\n"
                                 "## Kayexalate\nUne cuillère mesure.\n", encoding="utf-8")
    db = tmp_path / "db"
    assert main(["index", str(folder), "--persist-dir", str(db), "--model", str(tiny_model_dir), "--no-progress",
                 "--coarse-rotation", "none"]) == 0
    capsys.readouterr()
    assert main(["search", "cuillère", "--persist-dir", str(db), "--k", "1"]) == 0
    out = capsys.readouterr().out
    assert f"\n    section: {trail}\n" in out or "\n    section: Kayexalate\n" in out, out
    section = out.split("section: ", 1)[1].splitlines()[0]
    assert main(["search", "cuillère", "--persist-dir", str(db), "--k", "1", "--json",
                 "--filter", json.dumps({"section": section})]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["section"] == section


def test_index_fills_an_empty_collection_of_earlier_weights_with_the_current_ones(indexed, tiny_model_dir, tmp_path,
                                                                                   monkeypatch, caplog) -> None:
    """A run of an earlier medrag killed before its first write left an empty collection recording the
    default model's earlier weights: `medrag index` filled it with those superseded weights, where the
    Python API makes it again with the current ones (upgrade tryout)."""
    import chromadb

    import medrag
    import medrag.adapters
    import medrag.models
    from medrag.store import CONTRACT_KEYS
    from tests.tiny_model import build_tiny_model

    current = build_tiny_model(tmp_path / "current", hidden=384, seed=1)  # the weights the name ships now
    medrag.MatryoshkaChroma("left", medrag.MatryoshkaEmbeddings(str(tiny_model_dir)), persist_directory=str(indexed))
    client = chromadb.PersistentClient(path=str(indexed))
    col = client.get_collection("left")
    assert col.count() == 0
    earlier_fp = col.metadata[CONTRACT_KEYS["fingerprint"]]
    col.modify(metadata={**col.metadata, CONTRACT_KEYS["model"]: "bundled:medrag-e5-small-fr"})  # as the old run left it
    del client
    monkeypatch.setattr(medrag.adapters, "former_weights_spec",  # the tiny model plays the weights shipped on
                        lambda spec, fp, root=None: str(tiny_model_dir)
                        if (spec, fp) == ("bundled:medrag-e5-small-fr", earlier_fp) else None)
    real_folder = medrag.models.bundled_folder
    monkeypatch.setattr(medrag.models, "bundled_folder",
                        lambda spec: current if spec == "bundled:medrag-e5-small-fr" else real_folder(spec))
    src = tmp_path / "more.jsonl"
    src.write_text(json.dumps({"id": "na", "text": "Une hyponatrémie se corrige lentement."}, ensure_ascii=False) + "\n")
    with caplog.at_level("INFO", logger="medrag"):
        assert main(["index", str(src), "--persist-dir", str(indexed), "--collection", "left", "--id-field", "id",
                     "--no-progress"]) == 0
    col = chromadb.PersistentClient(path=str(indexed)).get_collection("left")
    assert col.count() == 1
    assert col.metadata[CONTRACT_KEYS["model"]] == "bundled:medrag-e5-small-fr"
    assert col.metadata[CONTRACT_KEYS["fingerprint"]] == medrag.MatryoshkaEmbeddings(str(current)).fingerprint
    assert "holds nothing" in caplog.text
