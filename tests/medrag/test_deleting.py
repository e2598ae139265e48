"""``medrag delete``: the shell's erasure of what ``medrag index`` built."""

from __future__ import annotations

import json

from medrag.cli import main

from .test_searching import _one_line, indexed  # noqa: F401 (indexed: a fixture)


def _ids(db, capsys) -> list[str]:
    assert main(["search", "fer TSH CRP", "--persist-dir", str(db), "--k", "10", "--json", "--hybrid"]) == 0
    return sorted(json.loads(line)["metadata"]["id"] for line in capsys.readouterr().out.splitlines())


def test_delete_by_filter_ids_or_text_with_a_dry_run_first(indexed, capsys) -> None:  # noqa: F811
    """There was no way to erase records from the shell (no CLI delete): a scripted erasure needed Python."""
    db = str(indexed)
    assert main(["delete", "--persist-dir", db, "--filter", '{"cat": "endo"}', "--dry-run"]) == 0
    assert "1 record(s) would be deleted" in capsys.readouterr().out
    assert _ids(db, capsys) == ["crp", "fer", "tsh"]  # the dry run wrote nothing
    assert main(["delete", "--persist-dir", db, "--filter", '{"cat": "endo"}']) == 0
    assert "deleted 1 record(s) from collection 'medrag'" in capsys.readouterr().out
    assert _ids(db, capsys) == ["crp", "fer"]
    assert main(["delete", "--persist-dir", db, "--contains", "ferritine", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matched"] == out["deleted"] == 1 and out["dry_run"] is False and len(out["ids"]) == 1
    assert _ids(db, capsys) == ["crp"]
    # nothing matched (a misspelt key): said on stderr, exit 0 (a re-run of an erasure is not an error)
    assert main(["delete", "--persist-dir", db, "--filter", '{"categorie": "inflam"}']) == 0
    captured = capsys.readouterr()
    assert "deleted 0 record(s)" in captured.out and "nothing matched" in captured.err
    assert _ids(db, capsys) == ["crp"]


def test_delete_errors_are_one_line_before_the_model_loads(indexed, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    import medrag.embeddings

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(medrag.embeddings, "load_model", no_model)
    _one_line(capsys, ["delete", "--persist-dir", str(indexed)], "say what to delete")
    _one_line(capsys, ["delete", "--persist-dir", str(indexed), "--filter", "{}"], "matches every record")
    _one_line(capsys, ["delete", "--persist-dir", str(indexed), "--filter", "{cat: 1}"], "--filter is not valid JSON")
    _one_line(capsys, ["delete", "--persist-dir", str(indexed), "--contains", "\u200b"], "--contains is empty")
    # bytes that are not UTF-8 (argv decodes them as lone surrogates): named before the model loads
    _one_line(capsys, ["delete", "--persist-dir", str(indexed), "--contains", "fer\udce9"], "--contains is not valid UTF-8")
    _one_line(capsys, ["delete", "--persist-dir", str(indexed), "--filter", '{"cat": "\udce9"}'],
              "--filter is not valid UTF-8")
    _one_line(capsys, ["delete", "--persist-dir", str(tmp_path / "none"), "--ids", "a"], "holds no Chroma store")
    assert not (tmp_path / "none").exists()
