"""Data loading: formats, the documented errors, counts of what was dropped, leak-free splits."""

from __future__ import annotations

import csv
import json

import pytest

from finetune.data import load_dataset_from_config
from medrag.qa.pairs import QAPair, load_frenchmedmcqa, load_qa_dataset, read_records, split_by_question
from medrag.errors import DataError
from tests.conftest import SHARED_DATA, requires_shared
from tests.finetune.helpers import mcqa_record, qa_pairs, write_jsonl


def _load(path, **kw):
    return load_qa_dataset(path, question_column="question", answer_column="answer", **kw)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_local_format_gives_the_same_pairs(tmp_path, suffix):
    rows = qa_pairs()
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    elif suffix == ".json":
        path.write_text(json.dumps({"data": rows}), encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["question", "answer"])
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    ds = _load(path, eval_fraction=0.25)
    assert ds.stats.rows == len(rows)
    got = sorted((p.question, p.answer) for p in ds.train + ds.eval)
    assert got == sorted((r["question"], r["answer"]) for r in rows)


def test_missing_columns_name_the_columns_found(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"anchor": "q", "text": "a"}])
    with pytest.raises(DataError) as exc:
        _load(path)
    msg = str(exc.value)
    assert "missing column(s) ['question', 'answer']" in msg
    assert "columns found: ['anchor', 'text']" in msg


def test_one_column_for_two_roles_is_refused(tmp_path):
    """--question-column anchor --answer-column anchor scored 1.0 everywhere: each question found itself."""
    path = write_jsonl(tmp_path / "p.jsonl", [{"anchor": f"q{i}", "positive": f"a{i}"} for i in range(4)])
    with pytest.raises(DataError, match="columns must differ \\(question 'anchor', answer 'anchor'\\)"):
        load_qa_dataset(path, question_column="anchor", answer_column="anchor")
    with pytest.raises(DataError, match="negatives 'positive'"):
        load_qa_dataset(path, question_column="anchor", answer_column="positive", negatives_column="positive")


def test_missing_negatives_column_is_named(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", qa_pairs(1))
    with pytest.raises(DataError, match=r"missing column\(s\) \['negs'\]"):
        _load(path, negatives_column="negs")


def test_bad_jsonl_line_gives_path_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "q1", "answer": "a1"}\n\n{"question": "q2", "answer": \n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        _load(path)
    assert f"{path}:3: not valid JSON" in str(exc.value)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "q1", "answer": "a1"}\n["q2", "a2"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.jsonl:2: expected a JSON object, got list"):
        _load(path)


def test_bad_json_file_gives_path_and_line(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('[\n {"question": "q", "answer": "a"},\n {"question": }\n]', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        _load(path)
    assert f"{path}:3: not valid JSON" in str(exc.value)


def test_csv_row_with_too_many_fields_gives_path_and_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("question,answer\nq1,a1\nq2,a2,extra\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        _load(path)
    assert f"{path}:3: more fields than the header's 2 columns" in str(exc.value)


def test_csv_stray_quote_is_an_error_not_rows_swallowed(tmp_path):
    # a lenient reader made rows 3 and 4 part of row 2's text, silently (found in review)
    path = tmp_path / "p.csv"
    path.write_text('question,answer\nq1,a1\nq2,"le patient dit ""ok\nq3,a3\nq4,a4\n', encoding="utf-8")
    with pytest.raises(DataError, match="never closed") as exc:
        _load(path)
    assert "1 rows read before it" in str(exc.value)


def test_corrupt_parquet_and_non_utf8_and_unknown_suffix(tmp_path):
    bad_pq = tmp_path / "p.parquet"
    bad_pq.write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match="cannot read parquet"):
        _load(bad_pq)
    latin = tmp_path / "p.csv"
    latin.write_bytes("question,answer\nfièvre,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        _load(latin)
    # past the text reader's first block: the line and the byte are the file's, not the block's
    far = tmp_path / "far.csv"
    body = "question,answer\n" + "".join(f"q{i},r{i}\n" for i in range(5000))
    far.write_bytes(body.encode() + "fièvre,a\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"far.csv:5002: not UTF-8 text \(invalid continuation byte at byte "
                                        rf"{len(body.encode()) + 2} of the file\)"):
        read_records(far)
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        read_records(write_jsonl(tmp_path / "p.txt", []))
    with pytest.raises(DataError, match="does not exist"):
        _load(tmp_path / "missing.jsonl")


def test_empty_rows_dropped_and_counted(tmp_path, caplog):
    rows = qa_pairs(2) + [{"question": "  ", "answer": "a"}, {"question": "q", "answer": None},
                          {"question": "q", "answer": ""}]
    with caplog.at_level("WARNING"):
        ds = _load(write_jsonl(tmp_path / "p.jsonl", rows), eval_fraction=0.0)
    # named, not only counted (user tryout)
    n = len(rows)
    assert f"dropped 3 row(s) with an empty question or answer (rows {n - 2}, {n - 1}, {n}; rows are records" in caplog.text
    assert ds.stats.empty_dropped == 3
    assert ds.stats.rows == len(rows)
    assert len(ds.train) == len(rows) - 3
    assert "empty dropped: 3" in ds.summary()


def test_all_rows_empty_is_an_error(tmp_path):
    with pytest.raises(DataError, match="every one of the 2 rows has an empty question or answer"):
        _load(write_jsonl(tmp_path / "p.jsonl", [{"question": "", "answer": "a"}, {"question": "q", "answer": " "}]))


def test_duplicate_pairs_removed_and_counted(tmp_path):
    rows = qa_pairs(2)
    # exact duplicates (after stripping) are removed; the same question with another answer is kept
    extra = [dict(rows[0]), {"question": rows[1]["question"] + "  ", "answer": rows[1]["answer"]},
             {"question": rows[0]["question"], "answer": "autre réponse"}]
    ds = _load(write_jsonl(tmp_path / "p.jsonl", rows + extra), eval_fraction=0.0)
    assert ds.stats.duplicates_dropped == 2
    assert len(ds.train) == len(rows) + 1
    assert "duplicate pairs dropped: 2" in ds.summary()


def test_split_keeps_every_pair_of_a_question_on_one_side(tmp_path):
    rows = qa_pairs() + [{"question": r["question"], "answer": r["answer"] + " bis"} for r in qa_pairs()[::3]]
    ds = _load(write_jsonl(tmp_path / "p.jsonl", rows), eval_fraction=0.25, seed=7)
    train_q, eval_q = {p.question for p in ds.train}, {p.question for p in ds.eval}
    assert train_q and eval_q and not train_q & eval_q
    assert len(ds.train) + len(ds.eval) == len(rows)
    assert len(eval_q) == round(len(train_q | eval_q) * 0.25)


def test_split_is_deterministic_and_independent_of_row_order():
    pairs = [QAPair(f"question {i}", f"answer {i % 7}") for i in range(50)]
    a = split_by_question(pairs, 0.2, seed=1)
    b = split_by_question(list(reversed(pairs)), 0.2, seed=1)
    assert {p.question for p in a[1]} == {p.question for p in b[1]}
    c = split_by_question(pairs, 0.2, seed=2)
    assert {p.question for p in a[1]} != {p.question for p in c[1]}
    assert split_by_question(pairs, 0.0)[1] == []
    with pytest.raises(DataError):
        split_by_question(pairs, 1.0)


def test_separate_eval_file_and_no_leakage(tmp_path):
    rows = qa_pairs()
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    evals = write_jsonl(tmp_path / "eval.jsonl", rows[:4] + [{"question": "nouvelle question", "answer": "x"}])
    ds = _load(train, eval_source=evals)
    assert len(ds.eval) == 5
    assert len(ds.train) == len(rows) - 4  # the 4 questions also in eval left train
    assert not {p.question for p in ds.train} & {p.question for p in ds.eval}
    assert "removed" in ds.split_method
    assert ds.eval_task().name == str(evals)  # the eval file, not "train.jsonl (eval)" (user tryout)


def test_eval_task_queries_corpus_and_qrels(tmp_path):
    ds = _load(write_jsonl(tmp_path / "p.jsonl", qa_pairs()), eval_fraction=0.25)
    task = ds.eval_task()
    assert len(task.queries) == len({p.question for p in ds.eval})
    assert len(task.corpus) == len({p.answer for p in ds.eval})
    assert all(task.qrels[q] for q in task.queries)


def test_negatives_column_list_or_json_string(tmp_path):
    rows = [{"question": "q1", "answer": "a1", "negs": ["n1", "n2", "a1", ""]},
            {"question": "q2", "answer": "a2", "negs": '["n3"]'},
            {"question": "q3", "answer": "a3", "negs": "n4"}]
    ds = _load(write_jsonl(tmp_path / "p.jsonl", rows), negatives_column="negs", eval_fraction=0.0)
    negs = {p.question: p.negatives for p in ds.train}
    assert negs == {"q1": ("n1", "n2"), "q2": ("n3",), "q3": ("n4",)}  # the positive itself is never a negative
    hf = ds.to_hf_dataset(num_negatives=2)
    assert hf.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert all(n != p for p, n in zip(hf["positive"], hf["negative_1"]))


def _write_mcqa(folder):
    folder.mkdir()
    train = [mcqa_record(0, "Quel examen ?", ["la TSH", "la CRP", "la ferritine", "", "la créatinine"], ["a", "c"]),
             mcqa_record(1, "Quelle valeur ?", ["1,10 g/L", "140/90", "6,5 %", "0,70", "aucune"], ["b"]),
             mcqa_record(2, "Quelle valeur ?", ["1,10 g/L", "140/90", "6,5 %", "0,70", "aucune"], ["b"])]
    dev = [mcqa_record(3, "Quel signe ?", ["fièvre", "toux", "rien", "douleur", "autre"], ["a"])]
    test = [mcqa_record(4, "Quel examen ?", ["la TSH", "la CRP", "x", "y", "z"], ["b"]),
            mcqa_record(5, "Quel organe ?", ["foie", "rein", "cœur", "os", "peau"], ["e"])]
    for name, recs in (("train", train), ("dev", dev), ("test", test)):
        (folder / f"{name}.json").write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    return folder


def test_frenchmedmcqa_loader_on_a_small_folder(tmp_path):
    ds = load_frenchmedmcqa(_write_mcqa(tmp_path / "mcqa"))
    by_q = {p.question: p for p in ds.train}
    assert by_q["Quelle valeur ?"].answer == "140/90"
    assert ds.stats.duplicates_dropped == 1
    # "Quel examen ?" is also a test question: it left train
    assert "Quel examen ?" not in by_q and set(by_q) == {"Quelle valeur ?", "Quel signe ?"}
    assert {p.question: p.answer for p in ds.eval} == {"Quel examen ?": "la CRP", "Quel organe ?": "peau"}
    assert by_q["Quel signe ?"].negatives == ("toux", "rien", "douleur", "autre")


def test_frenchmedmcqa_joins_several_correct_options(tmp_path):
    ds = load_frenchmedmcqa(_write_mcqa(tmp_path / "mcqa"), train_splits=("train",), eval_split="dev")
    pair = next(p for p in ds.train if p.question == "Quel examen ?")
    assert pair.answer == "la TSH; la ferritine"
    assert pair.negatives == ("la CRP", "la créatinine")  # the empty option is not a negative


def test_frenchmedmcqa_malformed_record(tmp_path):
    folder = _write_mcqa(tmp_path / "mcqa")
    (folder / "dev.json").write_text(json.dumps([{"question": "q", "answers": {"a": "x"}, "correct_answers": ["c"]}]))
    with pytest.raises(DataError, match=r"dev\.json: record 0 lists correct answer\(s\) \['c'\]"):
        load_frenchmedmcqa(folder)
    (folder / "dev.json").write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(DataError, match="not a FrenchMedMCQA record"):
        load_frenchmedmcqa(folder)
    with pytest.raises(DataError, match="does not exist"):
        load_frenchmedmcqa(tmp_path / "nowhere")


def test_config_auto_detects_a_frenchmedmcqa_folder(tmp_path):
    from finetune.config import FinetuneConfig

    folder = _write_mcqa(tmp_path / "mcqa")
    ds = load_dataset_from_config(FinetuneConfig(data=str(folder)))
    assert ds.name == "frenchmedmcqa[train+dev -> test]"
    ds = load_dataset_from_config(FinetuneConfig(data=str(folder), train_splits=["train"], eval_split="dev"))
    assert ds.name == "frenchmedmcqa[train -> dev]"


@requires_shared
def test_frenchmedmcqa_real_counts():
    ds = load_frenchmedmcqa(SHARED_DATA / "frenchmedmcqa")
    task = ds.eval_task()
    assert (len(task.queries), len(task.corpus)) == (620, 618)
    assert ds.stats.rows == 3105 and ds.stats.duplicates_dropped == 3
    assert len(ds.train) == 2475
    assert not {p.question for p in ds.train} & set(task.queries.values())
    # the same call twice gives the same pairs in the same order
    assert [(p.question, p.answer) for p in load_frenchmedmcqa(SHARED_DATA / "frenchmedmcqa").train] == \
        [(p.question, p.answer) for p in ds.train]


def test_excel_exports_read_as_written(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM (column '\\ufeffquestion' missing), French Excel separates
    with ';' ("more fields than the header's 1 columns"), Windows tools put a BOM before JSON lines."""
    rows = qa_pairs()
    bom = tmp_path / "bom.csv"
    with bom.open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=["question", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    semicolon = tmp_path / "semicolon.csv"
    with semicolon.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["question", "answer"], delimiter=";")
        writer.writeheader()
        writer.writerows([{**r, "answer": r["answer"] + ", à jeun"} for r in rows])
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_text("\ufeff" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert read_records(bom) == rows == read_records(jsonl)
    assert [r["answer"] for r in read_records(semicolon)] == [r["answer"] + ", à jeun" for r in rows]
    # a spreadsheet's tab-separated export, saved as .csv ("more fields than the header's 1 columns") or
    # as .tsv ("unsupported file type") (user tryout)
    for name in ("tabs.csv", "tabs.tsv"):
        with (tmp_path / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["question", "answer"], delimiter="\t")
            writer.writeheader()
            writer.writerows([{**r, "answer": r["answer"] + "; à jeun, 2 fois"} for r in rows])
        assert [r["answer"] for r in read_records(tmp_path / name)] == [r["answer"] + "; à jeun, 2 fois" for r in rows]
    # a .tsv is tab-separated whatever its header: one column of texts with commas (review)
    (tmp_path / "one.tsv").write_text("text\nLe paracétamol, 500 mg, trois fois par jour.\nLa CRP.\n", encoding="utf-8")
    assert read_records(tmp_path / "one.tsv") == [{"text": "Le paracétamol, 500 mg, trois fois par jour."},
                                                   {"text": "La CRP."}]


def test_split_names_on_a_pairs_file_are_errors(tmp_path):
    """A pairs file has no named splits: --eval-split / --train-splits were ignored without a word."""
    path = write_jsonl(tmp_path / "pairs.jsonl", qa_pairs())
    with pytest.raises(DataError, match="no split named 'nonexistent'"):
        _load(path, eval_split="nonexistent")
    with pytest.raises(DataError, match="no split named 'foo'"):
        _load(path, train_split="foo")


def test_an_empty_path_and_a_file_as_frenchmedmcqa_folder_say_what_they_are(tmp_path):
    """--data "" said "data file . is a folder"; --data-format frenchmedmcqa on a file said "folder ... does not exist"."""
    with pytest.raises(DataError, match="empty data path"):
        _load("")
    path = write_jsonl(tmp_path / "pairs.jsonl", qa_pairs())
    with pytest.raises(DataError, match="is a file, not a FrenchMedMCQA folder"):
        load_frenchmedmcqa(path)


def test_an_unreachable_hub_dataset_fails_at_once(monkeypatch, tmp_path):
    """Offline, a hub dataset id took ~27 s of retried requests to fail."""
    import datasets
    import socket

    from huggingface_hub import constants

    def refuse(address, timeout=None):
        raise OSError("[Errno -2] Name or service not known")

    def no_hub(*a, **k):
        raise AssertionError("the hub was asked although it cannot be reached")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("urllib.request.getproxies", dict)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    with pytest.raises(DataError, match="'org/medical-qa': the hub cannot be reached .* not in the HF cache"):
        _load("org/medical-qa")


def test_the_eval_split_as_the_only_training_split_is_named(tmp_path):
    """--train-splits train --eval-split train: `--check` said "train: 0 pairs", the run "the train split is empty"."""
    folder = tmp_path / "mcqa"
    folder.mkdir()
    records = [mcqa_record(i, f"Question {i} sur le fer ?", [f"option {i}{c}" for c in "abcde"], ["a"]) for i in range(6)]
    for split in ("train", "dev", "test"):
        (folder / f"{split}.json").write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError, match="eval split 'train' is also a training split"):
        load_frenchmedmcqa(folder, train_splits=("train",), eval_split="train")


def test_values_that_are_not_text_are_refused_with_row_and_field(tmp_path):
    from finetune.config import FinetuneConfig

    rows = qa_pairs()[:3] + [{"question": 12, "answer": "a fact"}]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    cfg = FinetuneConfig(data=str(data), question_column="question", answer_column="answer")
    with pytest.raises(DataError, match=r"p.jsonl: row 4: question is int 12, not text"):
        load_dataset_from_config(cfg)
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps(qa_pairs()[:2] + [{"question": "q", "answer": {"a": 1}}]))
    with pytest.raises(DataError, match=r"p.json: row 3: answer is dict \{'a': 1\}, not text"):
        load_dataset_from_config(cfg.replace(data=str(as_json)))
    # missing or null values stay the loader's empty rows
    nulls = write_jsonl(tmp_path / "n.jsonl", qa_pairs()[:8] + [{"question": None, "answer": "x"}])
    assert load_dataset_from_config(cfg.replace(data=str(nulls))).stats.empty_dropped == 1
    # json.dumps writes a missing float value as NaN: an empty row too, not an error
    nan = tmp_path / "nan.jsonl"
    nan.write_text("".join(json.dumps(r) + "\n" for r in qa_pairs()[:8] + [{"question": "q", "answer": float("nan")}]))
    assert load_dataset_from_config(cfg.replace(data=str(nan))).stats.empty_dropped == 1


def test_every_listed_hub_split_is_trained_on_and_none_is_evaluated_on(monkeypatch):
    """--train-splits train dev on a hub dataset trained on train alone and evaluated on dev, in
    silence (audit)."""
    import datasets

    from finetune.config import FinetuneConfig
    from finetune.data import load_dataset_from_config

    def rows(prefix, n):
        return [{"anchor": f"{prefix} question {i} ?", "positive": f"{prefix} answer {i}."} for i in range(n)]

    splits = {"train": rows("train", 20), "dev": rows("dev", 10), "test": rows("test", 5)}
    monkeypatch.setattr("medrag.qa.pairs._dataset_cached", lambda name: True)
    monkeypatch.setattr("medrag.models.hub_unreachable", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: dict(splits))

    def questions(**kw):
        ds = load_dataset_from_config(FinetuneConfig(data="org/x", **kw))
        return {p.question.split()[0] for p in ds.train}, {p.question.split()[0] for p in ds.eval}

    assert questions() == ({"train", "dev"}, {"test"})  # the default lists dev, which this dataset has
    assert questions(train_splits=["train"]) == ({"train"}, {"test"})
    del splits["test"]
    trained, held = questions(train_splits=["train", "dev"])  # no test split: a share held out by question
    assert trained == {"train", "dev"} and held and held <= {"train", "dev"}
    assert questions(train_splits=["train"]) == ({"train"}, {"dev"})
    with pytest.raises(DataError, match="has no split 'extra'"):
        questions(train_splits=["train", "extra"])
    with pytest.raises(DataError, match="the split 'dev' is both trained on and evaluated on"):
        questions(train_splits=["train", "dev"], eval_split="dev")
    del splits["dev"]
    assert questions() == ({"train"}, {"train"})  # the default's dev is optional


# ---------------------------------------------------------------------------- December 5 (failed before its fix)


def test_filled_negatives_are_never_another_answer_of_the_same_question():
    """A row without negatives got "answers of other training questions", but in 19 of 60 rows another
    correct answer of its own question."""
    from medrag.qa.pairs import QAPair, QADataset

    pairs = [QAPair(f"question {i % 4}", f"réponse {i}") for i in range(12)]  # 3 answers per question
    for seed in range(20):
        ds = QADataset(pairs, [], name="t").to_hf_dataset(num_negatives=1, seed=seed)
        for row in ds:
            own = {p.answer for p in pairs if p.question == row["anchor"]}
            assert row["negative_1"] not in own


def test_non_text_negatives_and_a_text_eval_fraction_are_refused(tmp_path):
    """Negatives [7, {"id": 3}, True] became the training texts '7', "{'id': 3}", 'True'; eval_fraction="0.2"
    raised a bare TypeError."""
    from medrag.errors import DataError
    from medrag.qa.pairs import load_qa_dataset
    from tests.finetune.helpers import write_jsonl

    data = write_jsonl(tmp_path / "n.jsonl", [{"question": "q1", "answer": "a1", "neg": [7, {"id": 3}, True]},
                                              {"question": "q2", "answer": "a2", "neg": ["a1"]}])
    with pytest.raises(DataError, match="row 1: neg holds int 7"):
        load_qa_dataset(str(data), question_column="question", answer_column="answer", negatives_column="neg")
    with pytest.raises(DataError, match="eval_fraction must be a number"):
        load_qa_dataset(str(data), question_column="question", answer_column="answer", eval_fraction="0.2")


def test_a_medquad_file_that_is_not_utf8_is_named_by_line(tmp_path):
    """It raised a bare UnicodeDecodeError."""
    from medrag.errors import DataError
    from medrag.qa.medquad import medquad_pairs

    path = tmp_path / "medquad.jsonl"
    path.write_bytes('{"question": "What is anemia?", "answer": "Anemia is a condition."}\n'.encode()
                     + '{"question": "Qu\'est-ce que l\'anémie ?", "answer": "x"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"medquad.jsonl:2"):
        medquad_pairs(path)


def test_a_semicolon_csv_whose_header_names_a_comma_is_read_with_semicolons(tmp_path):
    """'question;answer;"note, libre"' was read as a comma CSV: a parse error or 'missing column(s)' (audit)."""
    path = tmp_path / "semi.csv"
    path.write_text('question;answer;"note, libre"\r\n"Dose max du paracétamol ?";"4 g par jour, 3 g si fragile.";x\r\n',
                    encoding="utf-8")
    assert read_records(path) == [{"question": "Dose max du paracétamol ?", "answer": "4 g par jour, 3 g si fragile.",
                                   "note, libre": "x"}]


def test_nfc_and_nfd_spellings_are_one_question(tmp_path):
    """The same accented question in NFC and NFD (pasted from macOS) was two questions: its duplicate pair
    was kept and the held-out split could put it on both sides (audit)."""
    import unicodedata

    question, answer = "Quelle est la posologie de l'ibuprofène chez l'enfant ?", "10 mg/kg toutes les 8 heures."
    rows = [{"question": unicodedata.normalize(form, question), "answer": unicodedata.normalize(form, answer)}
            for form in ("NFC", "NFD")]
    rows += [{"question": f"Question {i} sur la fièvre ?", "answer": f"Réponse {i}."} for i in range(30)]
    path = write_jsonl(tmp_path / "nfc.jsonl", rows)
    for seed in range(8):
        ds = load_qa_dataset(path, question_column="question", answer_column="answer", eval_fraction=0.3, seed=seed)
        assert ds.stats.duplicates_dropped == 1
        key = unicodedata.normalize("NFC", question)
        sides = [any(unicodedata.normalize("NFC", p.question) == key for p in part) for part in (ds.train, ds.eval)]
        assert sides.count(True) == 1
    nfd = QAPair(unicodedata.normalize("NFD", question), "a")
    train, held = split_by_question([QAPair(question, "b"), nfd], 0.5, seed=1)
    assert len(train) in (0, 2) and len(held) in (0, 2)


def test_a_frenchmedmcqa_file_passed_alone_names_its_folder(tmp_path):
    """FrenchMedMCQA's test.json as --data advised remapping columns, which then failed on its answers dict (audit)."""
    folder = tmp_path / "fmcqa"
    folder.mkdir()
    (folder / "test.json").write_text(json.dumps([mcqa_record(0, "Quel organe ?", ["Le foie", "Le rein"], ["a"])]),
                                      encoding="utf-8")
    with pytest.raises(DataError, match=r"test.json is a FrenchMedMCQA file .*: pass its folder \(.*fmcqa, holding"):
        load_qa_dataset(folder / "test.json")


def test_a_question_written_one_way_keeps_its_held_out_rank():
    """NFC keys must not move the split of files whose questions have one spelling each (a model trained
    before would be scored on questions it trained on): the ranking is still the raw text's hash (review)."""
    import hashlib

    pairs = [QAPair(f"Quelle est la dose {i} de l'ibuprofe\u0300ne ?" if i % 3 else f"Question {i} ?", f"R{i}")
             for i in range(40)]
    ranked = sorted({p.question for p in pairs}, key=lambda q: hashlib.sha256(f"42\x00{q}".encode()).hexdigest())
    _, held = split_by_question(pairs, 0.25, seed=42)
    assert {p.question for p in held} == set(ranked[:10])


def test_a_csv_without_a_header_row_says_its_first_line_was_read_as_one(tmp_path):
    """The error named a 3-column header the file does not have: its first row was split on the commas
    inside the passage (user tryout)."""
    path = tmp_path / "p.csv"
    path.write_text('Quand faut-il être à jeun ?;"Avant le bilan, à jeun depuis 12 heures, eau autorisée."\n'
                    'Peut-on boire de l\'eau ?;"Oui, l\'eau plate."\n' * 3, encoding="utf-8")
    with pytest.raises(DataError, match="The first line is read as the header .*e.g. question;answer"):
        _load(path)


def test_rows_naming_their_columns_otherwise_are_named(tmp_path):
    """Half a file's rows used "question", half "anchor": half the data was dropped as "empty" (user tryout)."""
    rows = [{"question": f"q{i} ?", "answer": f"a{i}."} if i % 2 else {"anchor": f"q{i} ?", "answer": f"a{i}."}
            for i in range(10)]
    with pytest.raises(DataError, match=r"row 1 \(records counted from 1, blank lines left out\) has no 'question' key "
                                        r"\(its keys: anchor, answer\), nor do 4 other row\(s\): the rows name their "
                                        r"columns differently"):
        _load(write_jsonl(tmp_path / "mixed.jsonl", rows))


def test_data_errors_name_the_eval_file_the_json_column_and_the_row_alone(tmp_path):
    """User tryout: "data file nope.jsonl does not exist" for --eval-data; a cut JSON line without its
    column; "nor do 0 other row(s)"; a summary counting the eval file's rows as the training file's."""
    cols = {"question_column": "question", "answer_column": "answer"}
    good = tmp_path / "train.jsonl"
    good.write_text("".join(json.dumps({"question": f"Question {i} ?", "answer": f"Réponse {i}."}) + "\n"
                            for i in range(12)))
    with pytest.raises(DataError, match=r"^eval file: data file .*nope\.jsonl does not exist"):
        load_qa_dataset(good, eval_source=tmp_path / "nope.jsonl", **cols)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(good.read_text() + '{"question": "x", "ans\n')
    with pytest.raises(DataError, match=r"cut\.jsonl:13: not valid JSON \(Invalid control character at: column 23\)"):
        load_qa_dataset(cut, **cols)
    one = tmp_path / "one.jsonl"
    one.write_text(good.read_text() + json.dumps({"question": "Question ?"}) + "\n")
    with pytest.raises(DataError, match=r"row 13 \(records counted from 1, blank lines left out\) has no 'answer' "
                                        r"key \(its keys: question\); every other row has it"):
        load_qa_dataset(one, **cols)
    evals = tmp_path / "eval.jsonl"
    evals.write_text("".join(json.dumps({"question": f"Autre {i} ?", "answer": f"Texte {i}."}) + "\n" for i in range(5)))
    summary = load_qa_dataset(good, eval_source=evals, **cols).summary()
    assert f"dataset: {good} + eval file {evals}" in summary and "rows read: 17 (both files)" in summary
