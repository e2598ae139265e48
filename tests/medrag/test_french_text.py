"""Pair builders from the French medical text, on synthetic fixtures (tests/medrag/french_fixtures.py)."""

from __future__ import annotations

import gzip
import json

import pytest

from medrag.errors import DataError
from medrag.qa import QAPair
from medrag.qa.french_text import (
    LICENCES, SourcedPair, build_units, chunk_words, corpus_stats, document_part, document_task, leaflet_units,
    main, opening_split, product_short_name, read_documents, read_leaflets, split_cases, split_sentences,
    training_pairs, unlabelled_texts,
)
from tests.conftest import SHARED_DATA, requires_shared
from tests.medrag.french_fixtures import write_french_text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_french_text(tmp_path_factory.mktemp("fmt") / "french-medical-text")


def test_sentences_and_chunks():
    assert split_sentences("La TSH est basse. le suivi continue. Fin ! Ensuite") == \
        ["La TSH est basse. le suivi continue.", "Fin !", "Ensuite"]
    text = " ".join(f"Phrase numéro {i} du texte." for i in range(40))  # 40 sentences of 5 words
    chunks = chunk_words(text, max_words=30, min_words=10)
    assert all(len(c.split()) <= 30 for c in chunks) and " ".join(chunks) == text
    assert [len(c.split()) for c in chunks] == [30] * 6 + [20]
    long = " ".join(["mot"] * 70) + "."
    assert [len(c.split()) for c in chunk_words(long, max_words=30, min_words=5)] == [30, 30, 10]
    # a short last chunk joins the previous one when both fit in 1.3x max_words
    assert len(chunk_words("Un deux trois quatre cinq six. Sept.", max_words=6, min_words=3)) == 1
    with pytest.raises(DataError):
        chunk_words("x", max_words=0)


def test_leaflet_units_sections_queries_and_boilerplate(folder):
    doc = read_leaflets(folder)[0]
    assert product_short_name(doc.title) == "DOLIPRANE 100 mg"
    units = leaflet_units(doc)
    kinds = [u.kind for u in units]
    assert kinds == ["indications", "contre-indications", "precautions", "grossesse", "posologie", "oubli",
                     "effets", "conservation", "excipients"]  # "Sans objet" sub-section skipped
    preg = units[kinds.index("grossesse")]
    assert preg.heading == "DOLIPRANE 100 mg : grossesse et allaitement"
    assert preg.question == "Peut-on prendre DOLIPRANE 100 mg pendant la grossesse ou l'allaitement ?"
    assert preg.passages[0].startswith("DOLIPRANE 100 mg : Ce médicament est déconseillé")
    everything = " ".join(p for u in units for p in u.passages)
    for boiler in ("Veuillez lire attentivement", "Déclaration des effets", "ANSM", "Titulaire", "LABORATOIRE",
                   "Que contient cette notice"):
        assert boiler not in everything
    # the product name ending a sub-heading is not left at the start of the passage
    assert units[kinds.index("oubli")].passages[0].startswith("DOLIPRANE 100 mg : Ne prenez pas de dose double")
    assert {preg.query("mixed", s) for s in range(20)} == {preg.heading, preg.question}
    with pytest.raises(DataError, match="query style"):
        preg.query("shout")


def test_cases_and_abstracts():
    assert split_cases("Cas n° 1 Un homme de 30 ans. Cas n°2 Une femme de 40 ans.") == \
        ["Un homme de 30 ans.", "Une femme de 40 ans."]
    assert split_cases("Observation Un homme de 30 ans.") == ["Observation Un homme de 30 ans."]
    query, rest = opening_split("TITRE. Une femme de 40 ans tousse depuis un mois. Elle fume. Elle maigrit.")
    assert query == "TITRE. Une femme de 40 ans tousse depuis un mois." and rest == "Elle fume. Elle maigrit."
    query, rest = opening_split(" ".join(["mot"] * 100) + ". Fin.", max_query_words=60)
    assert len(query.split()) == 60 and rest.startswith("mot")


def test_document_split_is_stable_and_leak_free(folder):
    assert document_part("cases", "C1") == document_part("cases", "C1")
    shares = [document_part("abstracts", f"doc{i}") for i in range(4000)]
    assert 0.77 < shares.count("train") / 4000 < 0.83 and 0.08 < shares.count("val") / 4000 < 0.12
    for source in ("leaflets", "cases", "abstracts"):
        parts = {p: {u.doc_id for u in build_units(source, folder, parts=(p,))} for p in ("train", "val", "test")}
        assert all(parts.values())
        assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"]) \
            and not (parts["val"] & parts["test"])
    train_text = set(unlabelled_texts(folder, include_queries=True))
    for p in ("val", "test"):
        for u in build_units("cases", folder, parts=(p,)):
            assert not set(u.passages) & train_text


def test_training_pairs_licences_styles_and_seed(folder):
    pairs = training_pairs(folder)
    assert pairs and all(isinstance(p, QAPair) and isinstance(p, SourcedPair) for p in pairs)
    assert {p.source for p in pairs} == {"leaflets", "cases", "abstracts"}
    assert all(p.licence == LICENCES[p.source] for p in pairs)
    train_docs = {u.doc_id for s in ("leaflets", "cases", "abstracts") for u in build_units(s, folder, parts=("train",))}
    assert {p.doc_id for p in pairs} <= train_docs
    commercial = training_pairs(folder, commercial_ok=True)
    assert {p.source for p in commercial} == {"cases", "abstracts"} and all(p.commercial_ok for p in commercial)
    assert training_pairs(folder) == pairs  # reproducible
    assert training_pairs(folder, seed=1) != pairs and set(training_pairs(folder, seed=1, query_style="heading")) \
        == set(training_pairs(folder, seed=0, query_style="heading"))
    heading = training_pairs(folder, sources=["leaflets"], query_style="heading")
    both = training_pairs(folder, sources=["leaflets"], query_style="both")
    assert len(both) == 2 * len(heading) and all(" : " in p.question for p in heading)
    with pytest.raises(DataError, match="query_style"):
        training_pairs(folder, query_style="bad")
    with pytest.raises(DataError, match="unknown source"):
        training_pairs(folder, sources=["tweets"])
    texts = list(unlabelled_texts(folder, commercial_ok=True))
    assert texts and not any(t.startswith("DOLIPRANE") for t in texts)


def test_document_task(folder):
    task = document_task("leaflets", "val", folder)
    units = build_units("leaflets", folder, parts=("val",))
    assert len(task.corpus) == sum(len(u.passages) for u in units)
    assert task.extra["licence"] == "CC BY-NC 4.0" and task.extra["part"] == "val"
    assert len({u.doc_id for u in units}) >= 2  # distractors from other documents
    with pytest.raises(DataError, match="'both'"):
        document_task("cases", "val", folder, query_style="both")


def old_template_leaflet(product: str = "ACIDRINE") -> str:
    """A leaflet of the older template: its table of contents in upper case, section 6 headed
    INFORMATIONS SUPPLEMENTAIRES (187 of the 2,500 shared leaflets)."""
    toc = (f"1. QU'EST-CE QUE {product}, comprimé ET DANS QUELS CAS EST-IL UTILISE ? 2. QUELLES SONT LES "
           f"INFORMATIONS A CONNAITRE AVANT DE PRENDRE {product} ? 3. COMMENT PRENDRE {product} ? 4. QUELS SONT "
           f"LES EFFETS INDESIRABLES EVENTUELS ? 5. COMMENT CONSERVER {product} ? 6. INFORMATIONS SUPPLEMENTAIRES ")
    body = (f"1. QU'EST-CE QUE {product}, comprimé ET DANS QUELS CAS EST-IL UTILISE ? Ce médicament est préconisé "
            "dans le traitement des brûlures d'estomac et des remontées acides chez l'adulte. "
            f"2. QUELLES SONT LES INFORMATIONS A CONNAITRE AVANT DE PRENDRE {product} ? Ne prenez jamais {product} : "
            "si vous êtes allergique à l'un des composants ou en cas d'insuffisance rénale sévère. "
            f"3. COMMENT PRENDRE {product} ? Croquer un à deux comprimés au moment des douleurs, sans dépasser six "
            "comprimés par jour. 4. QUELS SONT LES EFFETS INDESIRABLES EVENTUELS ? Une constipation ou une diarrhée "
            f"peuvent survenir chez certains patients traités. 5. COMMENT CONSERVER {product} ? Tenir hors de la vue "
            "et de la portée des enfants, à une température ne dépassant pas 25°C. 6. INFORMATIONS SUPPLEMENTAIRES "
            f"Ce que contient {product} Les substances actives sont l'hydroxyde d'aluminium et le carbonate de "
            "magnésium.")
    return f"{product}, comprimé {toc}{body}"


def test_leaflet_of_the_older_template_keeps_its_sections():
    """Its upper-case table of contents was taken for the sections: every unit was filed under section 6,
    whose text ran over the whole leaflet ("Que contient la boîte ?" -> the indications; audit)."""
    from medrag.qa.french_text import FrenchDocument

    units = leaflet_units(FrenchDocument("leaflets", "L1", old_template_leaflet(), "ACIDRINE, comprimé à croquer"))
    by_kind = {u.kind: u for u in units}
    assert [u.unit_id.split("#")[1][0] for u in units] == ["1", "2", "3", "4", "5", "6"]
    assert by_kind["indications"].passages == ("ACIDRINE : Ce médicament est préconisé dans le traitement des "
                                               "brûlures d'estomac et des remontées acides chez l'adulte.",)
    assert by_kind["contre-indications"].passages[0].endswith("insuffisance rénale sévère.")
    assert by_kind["conservation"].passages[0].startswith("ACIDRINE : Tenir hors de la vue")
    assert by_kind["excipients"].passages == ("ACIDRINE : Les substances actives sont l'hydroxyde d'aluminium et "
                                              "le carbonate de magnésium.",)
    for u in units:  # no unit's text holds another section's heading
        assert not any(h in p for p in u.passages for h in ("QU'EST-CE QUE", "COMMENT PRENDRE", "INFORMATIONS SUPPL"))


def test_documents_sharing_an_id_are_refused(tmp_path):
    """Unit and passage ids are built from the document id: two case reports under one id had one's passage
    judged relevant to the other's query and the second's passage dropped (audit)."""
    with gzip.open(tmp_path / "clinical_cases_pamj.jsonl.gz", "wt", encoding="utf-8") as fh:
        for text in ("Un homme de 54 ans diabétique.", "Une femme enceinte avec une pré-éclampsie."):
            fh.write(json.dumps({"id": "X1", "text": text}, ensure_ascii=False) + "\n")
    with pytest.raises(DataError, match=r"clinical_cases_pamj.jsonl.gz:2: the id 'X1' is already the id of line 1"):
        read_documents("cases", tmp_path)


def test_a_bom_before_the_first_document_is_read(tmp_path):
    with gzip.open(tmp_path / "clinical_cases_pamj.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\ufeff" + json.dumps({"id": "c1", "text": "Un homme de 54 ans."}, ensure_ascii=False) + "\n")
    assert [d.doc_id for d in read_documents("cases", tmp_path)] == ["c1"]


def test_parts_given_as_a_string_are_refused(folder):
    with pytest.raises(DataError, match=r"parts must be a list of part names, e.g. \('test',\), not a string"):
        build_units("cases", folder, parts="test")


def test_missing_and_corrupt_files(tmp_path, folder):
    with pytest.raises(DataError, match="does not exist"):
        read_documents("cases", tmp_path)
    with pytest.raises(DataError, match="unknown source"):
        read_documents("tweets", folder)
    (tmp_path / "clinical_cases_pamj.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzipped"):
        read_documents("cases", tmp_path)
    with gzip.open(tmp_path / "pubmed_abstracts_morfitt.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "a", "text": "ok"}) + "\n{broken\n")
    with pytest.raises(DataError, match=r"pubmed_abstracts_morfitt.jsonl.gz:2"):
        read_documents("abstracts", tmp_path)
    with gzip.open(tmp_path / "drug_leaflets.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "a", "text": "no product field"}) + "\n")
    with pytest.raises(DataError, match="product"):
        read_documents("leaflets", tmp_path)


def test_stats_and_cli(folder, capsys):
    stats = {s.source: s for s in corpus_stats(folder)}
    assert sum(stats["cases"].documents.values()) == len(read_documents("cases", folder))
    assert stats["leaflets"].passage_words_max <= 150
    assert main(["--stats", "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "leaflets" in out and "CC BY-NC 4.0" in out and "commercial_ok=True" in out
    assert main(["--data", str(folder / "nowhere")]) == 1


@requires_shared
@pytest.mark.integration
def test_real_data_builds():
    folder = SHARED_DATA / "french-medical-text"
    stats = {s.source: s for s in corpus_stats(folder)}
    assert sum(stats["leaflets"].documents.values()) == 2500
    assert sum(stats["abstracts"].documents.values()) == 3624
    for s in stats.values():
        assert s.units["val"] > 50 and 60 <= s.passage_words_median <= 150 and s.passage_words_max <= 200
    pairs = training_pairs(folder, commercial_ok=True)
    assert len(pairs) > 3000 and {p.source for p in pairs} == {"cases", "abstracts"}
    # units version 2: the older template's leaflets (187) had every unit under section 6; one leaflet
    # (EN103607, a section-2 heading without its "?") still has
    sections: dict[str, set[str]] = {}
    for unit in build_units("leaflets", folder):
        sections.setdefault(unit.doc_id, set()).add(unit.unit_id.split("#")[1].split(".")[0])
    assert sum(found == {"6"} for found in sections.values()) <= 1
