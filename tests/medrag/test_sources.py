"""The readers (``medrag.sources``): records files and folders as documents, and each file or record they
cannot read, named with its reason."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from medrag.errors import DataError
from medrag.sources import iter_documents
from tests.medrag.test_indexing import _jsonl, _records, _write_jsonl


def test_every_reader_gives_the_same_documents(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _records(5)
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    (tmp_path / "a.csv").write_text("id,text,product,n\n" + "".join(
        f'{r["id"]},"{r["text"]}",{r["product"]},{r["n"]}\n' for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    seen = []
    for name in ("a.jsonl", "a.jsonl.gz", "a.csv", "a.parquet"):
        docs = list(iter_documents(tmp_path / name, id_field="id", metadata_fields=["product"]))
        seen.append([(k, t, m["product"]) for k, t, m in docs])
    assert all(s == seen[0] for s in seen) and len(seen[0]) == 5
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.md").write_text("# Titre\nDu texte.")
    (folder / "sub" / "a.txt").write_text("Autre texte.")
    (folder / "ignored.pdf").write_text("x")
    (folder / ".git").mkdir()
    (folder / ".git" / "description.txt").write_text("Unnamed repository")
    (folder / ".brouillon.md").write_text("x")
    root = folder.resolve().as_posix()
    assert [(k, m) for k, _, m in iter_documents(folder)] == [("b.md", {"source": "b.md", "folder": root}),
                                                              ("sub/a.txt", {"source": "sub/a.txt", "folder": root})]
    with pytest.raises(DataError, match=r"no \.txt/\.md/\.pdf file outside hidden folders \(2 hidden file\(s\) or "
                                        r"folder\(s\) skipped, e\.g\. \.a\.txt\)"):
        list(iter_documents(_only_hidden(tmp_path)))


def test_a_folder_is_walked_once_without_entering_hidden_folders(tmp_path, monkeypatch, caplog) -> None:
    """The folder was listed five times (three of them inside .git and .venv, with their thousands
    of files): 2.7 s before the first file was read for a folder of 20,000 notes beside a .venv."""
    import medrag.sources

    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("La TSH élevée.")
    (folder / ".venv" / "lib").mkdir(parents=True)
    (folder / ".venv" / "lib" / "LICENSE.txt").write_text("MIT")
    (folder / ".brouillon.md").write_text("x")
    (folder / "scan.docx").write_text("x")
    walked: list[str] = []
    real_walk = os.walk

    def spy(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            walked.append(Path(entry[0]).relative_to(folder).as_posix())
            yield entry

    monkeypatch.setattr(medrag.sources.os, "walk", spy)
    with caplog.at_level("INFO", logger="medrag.indexing"):
        assert [k for k, _, _ in iter_documents(folder)] == ["sub/a.txt"]
    assert walked == [".", "sub"]  # once, and not into .venv
    assert "1 file(s) with hidden names skipped (e.g. .brouillon.md)" in caplog.text
    assert "hidden folder(s) not walked: .venv/" in caplog.text
    assert "1 file(s) of other types not indexed (.docx 1; e.g. scan.docx)" in caplog.text


def test_notes_beside_a_store_are_read_and_a_folder_without_rights_is_named(tmp_path, monkeypatch, caplog) -> None:
    """Review of the one-walk listing: the notes of a folder holding a Chroma store (chroma.sqlite3) were
    left out in silence, and --prune deleted their chunks; Path.exists() inside a folder without read
    rights raised PermissionError where the walk names the folder and goes on."""
    import pathlib

    folder = tmp_path / "notes"
    (folder / "cardio").mkdir(parents=True)
    (folder / "a.md").write_text("# A\nUn texte.")
    (folder / "cardio" / "b.md").write_text("# B\nUn autre texte.")
    (folder / "cardio" / "chroma.sqlite3").write_bytes(b"SQLite format 3\x00")
    (folder / "cardio" / "index.bin").write_bytes(b"x")
    (folder / "prive").mkdir()
    (folder / "prive" / "c.txt").write_text("Secret.")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        assert [k for k, _, _ in iter_documents(folder)] == ["a.md", "cardio/b.md", "prive/c.txt"]
    assert "other types" not in caplog.text  # the store's own files are not "other types" to convert

    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "prive":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    for attr in ("exists", "is_file", "is_symlink", "is_dir"):
        original = getattr(pathlib.Path, attr)

        def guarded(self, *args, _original=original, **kwargs):
            if "prive" in self.parts:
                raise PermissionError(13, "Permission denied", str(self))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, attr, guarded)
    monkeypatch.setattr(os, "scandir", scandir)
    skipped: list[str] = []
    assert [k for k, _, _ in iter_documents(folder, skipped=skipped, warn=False)] == ["a.md", "cardio/b.md"]
    assert skipped == ["prive/"]


def _only_hidden(tmp_path: Path) -> Path:
    folder = tmp_path / "hidden-only"
    (folder / ".obsidian").mkdir(parents=True)
    (folder / ".obsidian" / "notes.md").write_text("x")
    (folder / ".a.txt").write_text("x")
    return folder


def test_reader_errors_name_the_problem(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text('{"texte": "x"}\n')
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n{oops\n')
    (tmp_path / "c.docx").write_text("x")
    # a repeated column name kept its last column in silence, a short row gave None values (review)
    (tmp_path / "d.csv").write_text("text,source,text\nun,a,deux\n")
    (tmp_path / "e.csv").write_text("text,source\nun,a\ndeux\n")
    cases = [(tmp_path / "a.jsonl", "no 'text' field"), (tmp_path / "b.jsonl", "b.jsonl:2"),
             (tmp_path / "c.docx", "unsupported"), (tmp_path / "missing.jsonl", "does not exist"),
             (tmp_path / "d.csv", "d.csv:1: the header names the column.s. 'text' more than once"),
             (tmp_path / "e.csv", "e.csv:3: fewer fields than the header's 2 columns")]
    for path, msg in cases:
        with pytest.raises(DataError, match=msg):
            list(iter_documents(path))
    # "pass --text-field" read oddly when it was passed: a header line first, or one record without it
    (tmp_path / "f.jsonl").write_text('{"format": "x", "version": 1}\n{"passage": "un"}\n')
    with pytest.raises(DataError, match=r"f.jsonl:1: no 'passage' field .*, or remove a first line that is not a "
                                        r"record \(a format header\)"):
        list(iter_documents(tmp_path / "f.jsonl", text_field="passage"))
    (tmp_path / "g.jsonl").write_text('{"passage": "un"}\n{"passage": "deux"}\n{"texte": "trois"}\n')
    with pytest.raises(DataError, match=r"g.jsonl:3: no 'passage' field .*; the 2 record\(s\) before it have it: "
                                        "every record needs it"):
        list(iter_documents(tmp_path / "g.jsonl", text_field="passage"))


def test_the_shipped_sample_indexes_past_its_header_line() -> None:
    """medrag's own sample file opens with a format header: `medrag index` stopped on it (tryout)."""
    from medrag.qa.sample import SAMPLE_FILE, load_sample_corpus
    from importlib import resources

    with resources.as_file(resources.files("medrag.data") / SAMPLE_FILE) as sample:
        docs = list(iter_documents(sample, text_field="passage", id_field="passage_id"))
        with pytest.raises(DataError, match="name the field that holds the text with --text-field"):  # not "the 1
            list(iter_documents(sample))  # record(s) before it have it": the header is no record (review)
    corpus = load_sample_corpus()
    assert [d[0] for d in docs] == [p.passage_id for p in corpus.passages]


def test_the_empty_rows_of_a_spreadsheet_export_are_skipped_with_an_id_field(tmp_path, caplog) -> None:
    """Excel FR ends an export with ";;" rows: without --id-field they were empty documents (skipped with a
    warning), with it "no 'id' value" stopped the whole run (user tryout). A row with text and no id is
    still an error."""
    csv = tmp_path / "excel.csv"
    csv.write_text("id;service;texte\n1;cardio;La troponine monte.\n2;endoc;La TSH explore la thyroïde.\n;;\n;;\n",
                   encoding="utf-8")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        docs = list(iter_documents(csv, text_field="texte", id_field="id"))
    assert [key for key, _, _ in docs] == ["1", "2"]
    assert "2 record(s) with neither text nor 'id' value skipped" in caplog.text
    # the Excel FR export's encoding: the error says how to convert it, as the folder's warning does (tryout)
    csv.write_bytes("id;texte\n1;Fièvre élevée.\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"excel.csv:2: not UTF-8 text .*iconv -f cp1252 -t utf-8"):
        list(iter_documents(csv, text_field="texte", id_field="id"))
    csv.write_text("id;texte\n1;La troponine monte.\n;Une note sans id.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"excel.csv:row 2: no 'id' value"):
        list(iter_documents(csv, text_field="texte", id_field="id"))


def test_every_skipped_file_is_named_with_its_own_reason(tmp_path, caplog, monkeypatch) -> None:
    """A hospital folder: one file without read rights stopped the whole folder, the warnings named one
    file per reason, and the first PDF's "encrypted" read as every skipped PDF's reason (user tryout).
    Now an unreadable file is skipped (kept by --prune, as the others), each warning counts its files,
    and -v names every one with its reason."""
    import logging
    import pathlib

    folder = tmp_path / "partage"
    folder.mkdir()
    for name in ("a.txt", "m_protege.txt", "z.txt"):
        (folder / name).write_text(f"Le document {name} parle de la ferritine.")
    (folder / "latin1.txt").write_bytes("Fièvre élevée.".encode("latin-1"))
    (folder / "cp1252.txt").write_bytes("Œdème du genou.".encode("cp1252"))
    (folder / "b_tronque.pdf").write_bytes(b"%PDF-1.4\nnot really")
    (folder / "c_faux.pdf").write_bytes(b"pas un PDF")
    real = pathlib.Path.read_bytes

    def read_bytes(self):
        if self.name == "m_protege.txt":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    (folder / "d_protege.pdf").write_bytes(b"%PDF-1.4")  # no read rights: not "decrypt or repair" (review)
    import builtins

    import medrag.sources

    def guarded_open(file, *args, **kwargs):
        if Path(file).name == "d_protege.pdf":
            raise PermissionError(13, "Permission denied")
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(medrag.sources, "open", guarded_open, raising=False)
    skipped: list[str] = []
    with caplog.at_level(logging.WARNING, logger="medrag.indexing"):
        keys = [k for k, _, _ in iter_documents(folder, skipped=skipped)]
    assert keys == ["a.txt", "z.txt"]
    assert sorted(skipped) == ["b_tronque.pdf", "c_faux.pdf", "cp1252.txt", "d_protege.pdf", "latin1.txt",
                               "m_protege.txt"]
    text = caplog.text
    assert "2 file(s) that cannot be read skipped (e.g. d_protege.pdf (cannot read: Permission denied))" in text
    assert "1 .pdf file(s) that cannot be read skipped (damaged or truncated?) (e.g. b_tronque.pdf (cannot read it " \
           "as a PDF" in text and "1 file(s) named .pdf that are not PDFs skipped (e.g. c_faux.pdf (not a PDF" in text
    assert "2 file(s) not UTF-8 text skipped (e.g. cp1252.txt" in text and "; -v names them all" in text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="medrag.indexing"):
        list(iter_documents(folder))
    named = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for name in ("b_tronque.pdf", "c_faux.pdf", "cp1252.txt", "d_protege.pdf", "latin1.txt", "m_protege.txt"):
        assert sum(f": {name} (" in line for line in named) == 1, name
    assert any("PDF not read: c_faux.pdf (" in line for line in named) and "-v names them all" not in caplog.text


def test_whole_number_ids_read_as_floats_are_warned_about(tmp_path, caplog) -> None:
    """A Parquet id column read as floats keys documents "1.0" where the same ids as integers key "1":
    switching export format stored every document twice, without a word (user tryout)."""
    floats = _jsonl(tmp_path / "f.jsonl", [{"id": 1.0, "text": "La TSH."}, {"id": 2.0, "text": "La CRP."}])
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        keys = [key for key, _, _ in iter_documents(floats, id_field="id")]
    assert keys == ["1.0", "2.0"]
    assert "2 'id' value(s) are whole numbers stored as floats (e.g. '1.0')" in caplog.text and "('1')" in caplog.text
    caplog.clear()
    ints = _jsonl(tmp_path / "i.jsonl", [{"id": 1, "text": "La TSH."}, {"id": 2.5, "text": "La CRP."}])
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        list(iter_documents(ints, id_field="id"))
    assert "stored as floats" not in caplog.text


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_warning(tmp_path, caplog) -> None:
    """One Latin-1 file name stopped the whole folder with "metadata at index 0, key 'source' ..."."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "ok.txt").write_text("La TSH élevée oriente vers une hypothyroïdie.")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "w") as f:
        f.write("La ferritine basse.")
    os.symlink(tmp_path / "missing.txt", folder / "lien.txt")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        docs = list(iter_documents(folder))
    assert [key for key, _, _ in docs] == ["ok.txt"]
    assert "not UTF-8 skipped (e.g. 'caf\\\\xe9.txt')" in caplog.text and "1 broken link(s)" in caplog.text


@pytest.mark.parametrize("line, kwargs, expected", [
    # stopped the run at the write, after the model loaded: "text at index 1 is not valid UTF-8" (a batch position)
    ('{"id": "s1", "text": "Texte avec \\ud83d coupé."}', {"id_field": "id"},
     r"a\.jsonl:2: field 'text' holds a lone surrogate"),
    ('{"id": "s1", "text": "ok.", "m": "x\\udc80"}', {"metadata_fields": ["m"]}, r"a\.jsonl:2: field 'm' holds a lone"),
    ('{"id": NaN, "text": "La TSH."}', {"id_field": "id"}, r"a\.jsonl:2: no 'id' value"),  # it was the key "nan"
    ('{"id": {"x": 1}, "text": "La TSH."}', {"id_field": "id"}, r"the 'id' value \{'x': 1\} is a dict"),  # its repr
    ('{"id": [1, 2], "text": "La TSH."}', {"id_field": "id"}, r"the 'id' value \[1, 2\] is a list"),
])
def test_a_record_that_cannot_be_stored_is_named_by_its_line(tmp_path, line, kwargs, expected) -> None:
    src = _write_jsonl(tmp_path / "a.jsonl", ['{"id": "a", "text": "Une ferritine basse."}', line])
    with pytest.raises(DataError, match=expected):
        list(iter_documents(src, **kwargs))


def test_utf16_files_are_read_and_other_file_types_and_twin_links_named(tmp_path, caplog) -> None:
    """Windows Notepad's "Unicode" (UTF-16 with a BOM) was skipped with advice (iconv -f latin1) that made
    text with a NUL between every letter, indexed without a word; .docx/.html files were left out in
    silence; a link to a file of the same folder indexed it twice (user tryout)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notepad.txt").write_bytes("Note : héparine 5000 UI.".encode("utf-16"))  # with its BOM
    (folder / "be.txt").write_bytes(b"\xfe\xff" + "Œdème.".encode("utf-16-be"))
    (folder / "nul.txt").write_bytes("Note".encode("utf-16-le"))  # UTF-16 without a BOM: NULs
    (folder / "u32.txt").write_bytes("Fièvre.".encode("utf-32"))  # its BOM starts with UTF-16's (review)
    (folder / "padded.txt").write_bytes("Note de sortie : fièvre.".encode() + b"\0" * 2)  # an old export's padding
    (folder / "cr.docx").write_bytes(b"PK\x03\x04")
    (folder / "page.html").write_text("<p>x</p>")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.bin").write_bytes(b"x")  # hidden: not named
    (folder / "lien.txt").symlink_to(folder / "notepad.txt")
    (folder / "index" / "1f0e").mkdir(parents=True)  # a store kept inside the folder: not named (user tryout)
    (folder / "index" / "chroma.sqlite3").write_bytes(b"SQLite format 3\0")
    (folder / "index" / "1f0e" / "data_level0.bin").write_bytes(b"x")
    with caplog.at_level("WARNING", logger="medrag.indexing"):
        docs = {key: text for key, text, _ in iter_documents(folder)}
    assert docs == {"be.txt": "Œdème.", "notepad.txt": "Note : héparine 5000 UI.", "u32.txt": "Fièvre.",
                    "padded.txt": "Note de sortie : fièvre."}  # indexed without its NULs (re-read: it was skipped)
    assert "1 file(s) not UTF-8 text skipped (e.g. nul.txt (NUL characters" in caplog.text and "cp1252" in caplog.text
    assert "2 file(s) of other types not indexed (.docx 1, .html 1; e.g. cr.docx)" in caplog.text
    assert "1 link(s) to files of the same folder skipped (e.g. lien.txt -> notepad.txt)" in caplog.text


def test_records_files_are_streamed_not_read_whole_for_the_first_record(tmp_path, monkeypatch) -> None:
    """The check of a source's first record before the model loads read a whole CSV or Parquet file
    (three to four whole reads per run: 18 s and 720 MB for a 30 MB CSV) (audit)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medrag.qa.pairs import iter_records, read_records

    csv_path = tmp_path / "a.csv"
    csv_path.write_text("text,year\nLa TSH est basse.,2021\nLa CRP monte.,2019\nligne,de,trop\n", encoding="utf-8")
    assert next(iter_documents(csv_path))[1] == "La TSH est basse."  # the bad last row is not reached
    with pytest.raises(DataError, match=r"a\.csv:4: more fields than the header's 2 columns"):
        read_records(csv_path)
    rows = [{"text": f"texte {i}", "n": i} for i in range(10_000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet", row_group_size=1000)
    assert list(iter_records(tmp_path / "a.parquet")) == rows == read_records(tmp_path / "a.parquet")
    # the first record of a Parquet file is read without converting the whole table (review)
    read: list[int] = []

    class Counting(pq.ParquetFile):
        def iter_batches(self, *args, **kwargs):
            for batch in super().iter_batches(*args, **kwargs):
                read.append(batch.num_rows)
                yield batch

    monkeypatch.setattr(pq, "ParquetFile", Counting)
    assert next(iter_documents(tmp_path / "a.parquet"))[1] == "texte 0" and 0 < sum(read) < len(rows)
