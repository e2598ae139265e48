"""BM25Index: scores equal bm25s's own Lucene BM25, upserts/deletes, id filters, atomic save/load."""

from __future__ import annotations

import numpy as np
import pytest

from medrag.errors import InvalidInputError, LexicalIndexError
from medrag.lexical.analyzer import AnalyzerOptions
from medrag.lexical.bm25 import BM25Index, _unpack_strings
from medrag.lexical.protocol import LexicalIndex
from tests.conftest import SHARED_DATA, requires_shared

DOCS = {
    "hba1c": "L'HbA1c reflète l'équilibre glycémique des trois derniers mois chez le diabétique.",
    "tsh": "La TSH est le premier examen pour explorer la thyroïde.",
    "avk": "Les AVK imposent une surveillance de l'INR ; l'INR cible est entre 2 et 3.",
    "fer": "La ferritine basse traduit une carence en fer, cause d'anémie microcytaire.",
    "diab": "Le diabète de type 2 se traite d'abord par la metformine et l'activité physique.",
}


@pytest.fixture()
def index() -> BM25Index:
    idx = BM25Index()
    idx.add(list(DOCS), list(DOCS.values()))
    return idx


def test_is_a_lexical_index(index: BM25Index) -> None:
    assert isinstance(index, LexicalIndex) and len(index) == 5


def test_scores_match_bm25s_reference(index: BM25Index) -> None:
    import bm25s

    ref = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    ref.index([index.analyzer(t) for t in DOCS.values()], show_progress=False)
    for query in ["diabète glycémie", "INR AVK", "carence en fer ferritine", "thyroïde"]:
        expected = ref.get_scores(index.analyzer(query))
        got = index.scores(query)
        assert {i: pytest.approx(float(s), rel=1e-5) for i, s in zip(DOCS, expected) if s > 0} == got


def test_search_ranks_and_omits_non_matching(index: BM25Index) -> None:
    ids, scores = index.search("Hémoglobine glyquée HbA1c du diabétique", k=5)
    assert ids[0] == "hba1c" and "tsh" not in ids
    assert list(scores) == sorted(scores, reverse=True)
    assert index.search("zzz inconnu", k=3)[0] == []
    assert index.search("le la les", k=3)[0] == []


def test_ids_filter(index: BM25Index) -> None:
    assert index.search("diabète", k=5, ids={"diab"})[0] == ["diab"]
    assert index.search("diabète", k=5, ids=set())[0] == []


def test_upsert_and_delete(index: BM25Index) -> None:
    index.add(["tsh"], ["La ferritine aussi."])
    assert "tsh" not in index.search("thyroïde", k=5)[0]
    assert "tsh" in index.search("ferritine", k=5)[0]
    index.delete(["fer", "absent"])
    assert index.search("ferritine", k=5)[0] == ["tsh"] and len(index) == 4


def test_save_load_round_trip(tmp_path, index: BM25Index) -> None:
    index.generation = 7
    path = tmp_path / "sub" / "lexical.npz"
    index.save(path)
    loaded = BM25Index.load(path)
    assert loaded.generation == 7 and loaded.signature == index.signature and loaded.ids == index.ids
    for query in ["INR", "diabète metformine", "fer"]:
        a, sa = index.search(query, k=3)
        b, sb = loaded.search(query, k=3)
        assert a == b and np.allclose(sa, sb)
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left


def test_options_survive_save(tmp_path) -> None:
    idx = BM25Index(AnalyzerOptions(keep_acronyms=False, extra_stopwords=("patient",)), k1=1.5, b=0.5)
    idx.add(["a"], ["AINS chez le patient"])
    idx.save(tmp_path / "x.npz")
    loaded = BM25Index.load(tmp_path / "x.npz")
    assert loaded.signature == idx.signature != BM25Index().signature
    assert loaded.analyzer.options == idx.analyzer.options


def test_corrupt_or_missing_file(tmp_path) -> None:
    with pytest.raises(LexicalIndexError):
        BM25Index.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not an index")
    with pytest.raises(LexicalIndexError):
        BM25Index.load(tmp_path / "bad.npz")


def test_bad_arguments(index: BM25Index) -> None:
    with pytest.raises(InvalidInputError):
        index.search("fer", k=0)
    with pytest.raises(InvalidInputError):
        index.add(["a", "b"], ["un seul texte"])
    with pytest.raises(InvalidInputError):
        BM25Index(k1=0)


def test_wrong_types_are_input_errors_not_type_errors(tmp_path, index: BM25Index) -> None:
    """Found in review: k1="a" was a TypeError, add("ab", ...) indexed the ids "a" and "b", and
    save() to a folder an IsADirectoryError."""
    for k1, b in (("a", 0.75), (1.2, None), (True, 0.75), (float("nan"), 0.75), (float("inf"), 0.75)):
        with pytest.raises(InvalidInputError, match="BM25 needs numbers"):
            BM25Index(k1=k1, b=b)
    assert BM25Index(k1=np.float32(1.5), b=np.float64(0.5)).signature.endswith("bm25-1.5-0.5")
    before = index.ids
    with pytest.raises(InvalidInputError, match="not a single string"):
        index.add("ab", ["un", "deux"])
    assert index.ids == before
    with pytest.raises(InvalidInputError, match="is a folder"):
        index.save(tmp_path)


def test_empty_index() -> None:
    assert BM25Index().search("fer", k=3) == ([], pytest.approx(np.zeros(0)))


def test_token_cache_gives_the_analyzers_terms(tmp_path, index: BM25Index) -> None:
    """The per-token id cache of ``add`` stores exactly the analyzer's terms, also for texts added
    after a reload (whose vocabulary is restored but whose cache starts empty)."""

    def stored_terms(idx: BM25Index) -> dict[str, list[str]]:
        words = {i: t for t, i in idx._vocab.items()}
        return {id_: [words[int(t)] for t in row] for id_, row in idx._rows.items()}

    for id_, text in DOCS.items():
        assert stored_terms(index)[id_] == index.analyzer(text)
    index.save(tmp_path / "lexical.npz")
    loaded = BM25Index.load(tmp_path / "lexical.npz")
    more = {"rep": "L'HbA1c et la TSH du diabétique, dosées à 6,5 %.", "new": "Hyperkaliémie sous IEC."}
    loaded.add(list(more), list(more.values()))
    assert len(set(loaded._vocab.values())) == len(loaded._vocab)
    for id_, text in {**DOCS, **more}.items():
        assert stored_terms(loaded)[id_] == loaded.analyzer(text)


def _save_with(tmp_path, index: BM25Index, **arrays) -> str:
    """``index`` saved, then some of its arrays replaced (a damaged or foreign file)."""
    import json as _json

    path = tmp_path / "index.npz"
    index.save(path)
    with np.load(path) as data:
        content = {k: data[k] for k in data.files}
    for key, value in arrays.items():
        content[key] = np.array(_json.dumps(value)) if key == "meta" else value
    np.savez(path, **content)
    return str(path)


def test_damaged_or_foreign_files_are_lexical_index_errors(tmp_path, index: BM25Index) -> None:
    """zipfile, EOF, KeyError, TypeError and AttributeError escaped load(): every hybrid search failed."""
    index.save(tmp_path / "good.npz")
    good = (tmp_path / "good.npz").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for n, damaged in enumerate((bytes(flipped), good[: len(good) // 2], b"")):
        (tmp_path / f"bad{n}.npz").write_bytes(damaged)
        with pytest.raises(LexicalIndexError, match="cannot read the lexical index"):
            BM25Index.load(tmp_path / f"bad{n}.npz")
    import json as _json

    with np.load(tmp_path / "good.npz") as data:
        meta = _json.loads(str(data["meta"]))
        lengths = data["lengths"]
    for bad_meta in ({k: v for k, v in meta.items() if k != "options"}, ["not", "a", "dict"],
                     {**meta, "options": {**meta["options"], "from_a_newer_version": True}}):
        with pytest.raises(LexicalIndexError):
            BM25Index.load(_save_with(tmp_path, index, meta=bad_meta))
    with pytest.raises(LexicalIndexError, match="inconsistent"):
        BM25Index.load(_save_with(tmp_path, index, lengths=lengths[:-1]))
    with pytest.raises(LexicalIndexError, match="inconsistent"):
        BM25Index.load(_save_with(tmp_path, index, vocab=np.frombuffer(b"seul", np.uint8), vocab_ends=np.array([4])))
    with pytest.raises(LexicalIndexError, match="cannot read"):  # offsets past the end of the blob
        BM25Index.load(_save_with(tmp_path, index, id_ends=np.array([1, 2, 3, 4, 10_000])))
    with pytest.raises(LexicalIndexError, match="cannot read"):
        BM25Index.load(_save_with(tmp_path, index, ids=np.array(["hba1c", "tsh", "avk", "fer", "diab"])))
    with pytest.raises(LexicalIndexError, match="cannot read"):
        BM25Index.load(_save_with(tmp_path, index, lengths=lengths.astype(float)))


def test_query_scores_stay_consistent_with_later_writes(index: BM25Index) -> None:
    """A search in one thread read the row order that a write in another thread had just rebuilt:
    IndexError, or scores attached to the wrong ids."""
    scores = index.query_scores("ferritine")
    before = index.top(scores, 3)
    index.add(["z1", "z2"], ["Ferritine et fer sérique.", "Un mot nouveau : procalcitonine."])
    index.delete([before[0][0]])
    index.query_scores("fer")  # rebuilds the matrix for the new rows
    after = index.top(scores, 3)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])
    assert index.top(index.query_scores("ferritine"), 5)[0][0] != before[0][0]


def test_a_term_newer_than_the_matrix_is_ignored_not_an_error(index: BM25Index) -> None:
    matrix = index._matrix()
    new_terms = index._term_ids("procalcitonine")  # joins the vocabulary; the matrix has no column for it yet
    index._bm25 = matrix  # as a search that read the matrix just before another thread's add
    assert new_terms and index.query_terms("procalcitonine") == []
    scores = index.query_scores("procalcitonine ferritine")
    assert scores.values.shape == (len(matrix.order),) and scores.values.any()
    assert np.array_equal(scores.values, index.query_scores("ferritine").values)


def test_a_single_string_of_ids_is_refused_not_split() -> None:
    """delete("12") deleted the ids "1" and "2" and kept "12"; search(ids="ab") searched "a" and "b"."""
    index = BM25Index()
    index.add(["1", "2", "12"], ["ferritine basse", "ferritine haute", "ferritine normale"])
    with pytest.raises(InvalidInputError, match=r"\['12'\]"):
        index.delete("12")
    with pytest.raises(InvalidInputError, match="single string"):
        index.search("ferritine", 3, ids="12")
    assert sorted(index.ids) == ["1", "12", "2"]
    assert index.search("ferritine", 3, ids=["12"])[0] == ["12"]


def test_a_rejected_add_adds_nothing() -> None:
    """A bad text late in add() left the earlier ones counted by len() but missing from searches."""
    index = BM25Index()
    index.add(["a"], ["ferritine basse"])
    index.search("ferritine", 2)  # the matrix is built
    with pytest.raises(InvalidInputError):
        index.add(["b", "c"], ["ferritine haute", 42])  # type: ignore[list-item]
    assert len(index) == 1 and index.search("ferritine", 3)[0] == ["a"]


def test_a_query_typed_in_capitals_or_an_acronym_in_lowercase_matches(index: BM25Index) -> None:
    """A short word typed in capitals is an acronym to the analyzer (one unstemmed term), so a
    query typed with caps lock matched nothing ('ANÉMIE' -> 'anemie', the passage's 'anem'), and an
    acronym typed in lowercase missed its passage ('avk' ok, but 'ains' -> 'ain')."""
    index.add(["ains"], ["Les AINS exposent à un risque d'ulcère gastrique."])
    assert index.search("ANÉMIE", k=1)[0] == ["fer"]
    assert index.search("ains", k=1)[0] == ["ains"]
    assert index.search("L'ANÉMIE", k=1)[0] == ["fer"]
    assert index.query_terms("TSH ÉLEVÉE ET ANÉMIE") == ["tsh", "anem"]  # 'elev' is in no passage


def test_an_ambiguous_query_word_takes_the_reading_more_documents_hold() -> None:
    """One heading written in capitals put 'fievre' in the vocabulary, and a caps-lock 'FIÈVRE' then
    found that heading only; a deleted document's terms stay in the vocabulary and blocked the other
    reading too (review). Each reading is weighed by the documents that hold it now."""
    idx = BM25Index()
    idx.add(["h", "f1", "f2", "pli", "ains", "smecta", "cap"],
            ["FIÈVRE", "Une fièvre élevée.", "La fièvre de l'enfant.", "Le pli de l'aine et l'aine droite.",
             "Les AINS et l'ulcère.", "SMECTA 3 g : composition.", "LES EFFETS DES AINS"])
    assert idx.query_terms("FIÈVRE") == ["fievr"] and idx.search("FIÈVRE", k=3)[0][:2] == ["f1", "f2"]
    assert idx.query_terms("fièvre") == ["fievr"]
    # typed with lowercase letters around it, a word in capitals is an acronym (it has documents)
    assert idx.query_terms("aine et AINS") == ["ain", "ains"]
    assert idx.query_terms("AINS") == ["ains"]  # caps lock: 'ains' (2 documents) against 'ain' (1)
    assert idx.query_terms("Smecta") == ["smecta"] and idx.query_terms("smecta") == ["smecta"]
    assert idx.query_terms("LES AINS") == ["ains"]  # a stopword typed with caps lock is dropped
    assert idx.query_terms("des ains") == ["ains"]  # a lowercase stopword is never an acronym
    idx.delete(["f1", "f2"])
    idx.add(["f3"], ["ANÉMIE et fer."])
    idx.delete(["h"])
    assert idx.query_terms("FIÈVRE") == [] and idx.query_terms("ANÉMIE") == ["anemie"]
    idx.add(["a1"], ["Une anémie."])
    assert idx.query_terms("ANÉMIE") == ["anemie"]  # a tie keeps the reading the analyzer gives
    idx.add(["a2"], ["L'anémie ferriprive."])
    assert idx.query_terms("ANÉMIE") == ["anem"]
    assert idx.query_terms("") == [] and idx.query_terms("le la les") == [] and BM25Index().query_terms("x") == []
    with pytest.raises(InvalidInputError, match="must be a str"):
        idx.query_terms(None)  # type: ignore[arg-type]


def test_a_lone_letter_of_a_caps_lock_query_is_the_letter() -> None:
    """``HÉPATITE C`` typed with caps lock was read ``hepat`` alone (``c``: a stopword of the
    lowercased shout): hépatite B tied with C, and came first (audit)."""
    index = BM25Index()
    index.add(["hb", "hc", "vd", "s"], ["Le vaccin contre l'hépatite B est obligatoire.",
                                        "Le traitement de l'hépatite C repose sur les antiviraux.",
                                        "La vitamine D et le soleil.", "La protéine S et la phase S du cycle."])
    ids, scores = index.search("HÉPATITE C", 2)
    assert ids == ["hc", "hb"] and scores[0] > scores[1] and index.query_terms("VITAMINE D") == ["vitamin", "d"]
    # a plural mark, an ordinal, an abbreviation, an elision, A and Y stay what the analyzer reads
    for query in ("PROPOSITION(S) EXACTE(S)", "LA 11 E RÉVISION", "N. SP. NOUVELLE", "D'UNE PROTÉINE",
                  "IL Y A UNE PROTÉINE"):
        assert "s" not in index.query_terms(query) and "d" not in index.query_terms(query), query
    # by its place, not its text: one lone S does not make the plural marks letters too (review)
    assert index.query_terms("PROTÉINE S : PROPOSITION(S) EXACTE(S)").count("s") == 1
    assert index.query_terms("HÉPATITE\u00a0C") == ["hepat", "c"]  # a no-break space


def test_a_lone_lowercase_letter_after_a_word_is_the_letter() -> None:
    """``traitement hépatite c`` and ``carence vitamine d``, typed in lowercase, lost the letter to the
    stopwords of ``c'`` and ``d'``: BM25 ranked hépatite A and vitamine A first, and the default hybrid
    search followed it (user tryout). An elision typed without its apostrophe stays a stopword."""
    index = BM25Index()
    index.add(["ha", "hc", "va", "vd"], ["Traitement de l'hépatite A : repos.", "Traitement de l'hépatite C : antiviraux.",
                                         "Carence en vitamine A : cécité.", "Carence en vitamine D : rachitisme."])
    assert index.search("traitement hépatite c", 1)[0] == ["hc"] and index.search("carence vitamine d", 1)[0] == ["vd"]
    assert index.query_terms("vitamine d 1000 ui") == ["vitamin", "d"]
    # before "et", a word that no elision precedes, or after a word where "c'" would not be elided (review)
    for query in ("hépatite c et grossesse", "vitamine d et calcium", "hépatite c aiguë",
                  "hépatite c.", "carence vitamine d ?"):
        assert "c" in index.query_terms(query) or "d" in index.query_terms(query), query
    for query in ("traitement d attaque", "c est l hépatite", "patient d un certain âge", "de d vitamine",
                  "hépatite (c)", "hépatite c'est", "complexe n°39 vitamine d-", "hépatite c est grave",
                  "traitement d hépatite", "vitamine d. sp"):
        assert "c" not in index.query_terms(query) and "d" not in index.query_terms(query), query


@pytest.mark.integration
@requires_shared
def test_no_query_of_the_suite_has_a_lowercase_lone_letter() -> None:
    """docs/results.md says the lowercase-letter rule reads no query of the validation suite differently,
    so the suite's BM25 and hybrid numbers stand: this checks it, on both parts and every domain."""
    from medrag.lexical.analyzer import FrenchMedicalAnalyzer
    from medrag.lexical.bm25 import _typed_letter
    from medrag.qa.suite import build_suite

    analyzer, read = FrenchMedicalAnalyzer(), []
    for part in ("val", "test"):
        for domain in build_suite(part, data_root=SHARED_DATA).domains.values():
            for query in domain.task.queries.values():
                text, spans = analyzer.token_spans(query)
                read += [(domain.name, query) for i, (token, _) in enumerate(spans)
                         if any(c.islower() for c in query) and not analyzer.token_terms(token)
                         and analyzer.token_terms(token.upper()) and _typed_letter(analyzer, text, spans, i)]
    assert read == []


def test_bound_is_the_most_a_document_could_score(index: BM25Index) -> None:
    """``QueryScores.bound``: the idf sum of the scored terms; every score lies below it, and a
    document holding every term many times comes close (what "auto" fusion divides by)."""
    import math

    for query in ("INR sous AVK", "ferritine basse carence", "INR INR", "metformine"):
        scores = index.query_scores(query)
        terms = index.query_terms(query)
        n, held = len(index), [sum(t in index.analyzer(text) for text in DOCS.values()) for t in terms]
        assert scores.bound == pytest.approx(sum(math.log1p((n - df + 0.5) / (df + 0.5)) for df in held), rel=1e-5)
        assert 0 < scores.values.max() < scores.bound
    assert index.query_scores("INR INR").bound == pytest.approx(2 * index.query_scores("INR").bound)
    assert index.query_scores("xyzzy").bound == 0.0 and BM25Index().query_scores("INR").bound == 0.0
    repeated = BM25Index()
    repeated.add(["x", "y", "z"], ["warfarine " * 40, "fer", "tsh"])
    full = repeated.query_scores("warfarine")
    assert full.values.max() / full.bound > 0.9  # saturation: near the bound


def test_a_query_term_with_a_typo_is_read_as_the_held_term_one_edit_away(index: BM25Index) -> None:
    """``metformne`` gave a term no passage holds: BM25 lost the query's most specific word."""
    assert index.query_terms("metformne") == index.query_terms("metformine") == ["metformin"]
    assert index.search("ferritinne basse", k=1)[0] == ["fer"]
    assert index.query_terms("diabéte metfromine") == ["diabet", "metformin"]  # two letters swapped
    # held terms, short words, numbers and codes, acronyms typed in capitals: unchanged
    assert index.query_terms("thyroïde") == ["thyroid"] and index.query_terms("fel") == []
    assert index.query_terms("HbA2c") == [] and index.query_terms("la TSG") == []
    off = BM25Index(AnalyzerOptions(typo_tolerance=False))
    off.add(list(DOCS), list(DOCS.values()))
    assert off.query_terms("metformne") == [] and off.signature == index.signature  # query side only


def test_the_typo_reading_takes_the_spelling_most_documents_hold() -> None:
    idx = BM25Index()
    idx.add(["a", "b", "c"], ["Le paracétamol.", "Paracétamol et fièvre.", "La paracétamel, une coquille."])
    assert idx.query_terms("paracétamml") == ["paracetamol"]  # held by 2 against 1
    assert idx.query_terms("paracetamel") == ["paracetamel"]  # a held term is never changed


def test_the_words_read_as_another_term_are_named() -> None:
    """``cortisol`` (an analyte) was scored as ``cortisone`` (a drug) in a store without cortisol, and
    nothing said so (user tryout): the query's scores name each word read as another term."""
    idx = BM25Index()
    idx.add(["a", "b"], ["La cortisone au long cours.", "Le paracétamol et la fièvre."])
    scores = idx.query_scores("cortisol et paracetamol")
    assert scores.read_as == (("cortisol", "cortison"),) and scores.values[0] > 0
    assert idx.query_scores("cortisol cortisol").read_as == (("cortisol", "cortison"),)  # named once
    assert idx.query_scores("cortisone et fièvre").read_as == ()  # held terms are not named
    assert idx.query_scores("xyzzyq").read_as == ()  # no held term one edit away: nothing read
    assert BM25Index(AnalyzerOptions(typo_tolerance=False)).query_scores("cortisol").read_as == ()


def test_typo_tolerance_is_not_recorded_in_the_index_file(tmp_path) -> None:
    import json

    off = BM25Index(AnalyzerOptions(typo_tolerance=False))
    off.add(list(DOCS), list(DOCS.values()))
    off.save(tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz", allow_pickle=False) as data:
        assert "typo_tolerance" not in json.loads(str(data["meta"]))["options"]
    loaded = BM25Index.load(tmp_path / "x.npz")  # the default reading; a store sets its own on it
    assert loaded.typo_tolerance and loaded.signature == off.signature
    assert loaded.query_terms("metformne") == ["metformin"] and off.query_terms("metformne") == []
    with pytest.raises(InvalidInputError, match="typo_tolerance must be True or False"):
        AnalyzerOptions(typo_tolerance="no")


def test_a_long_word_in_capitals_gets_the_typo_reading_an_acronym_does_not() -> None:
    idx = BM25Index()
    idx.add(["a", "b"], ["Le DOLIPRANE et la fièvre.", "Les ANCA et les vascularites."])
    assert idx.query_terms("effets du DOLIPRANNE") == ["dolipran"] and idx.query_terms("les ANKA") == []
    assert idx.query_terms("VASCULRITES") == ["vascular"]  # a caps-lock query


def test_the_typo_reading_never_lands_on_a_short_or_unrelated_term() -> None:
    """A word's one-letter edits can stem to a short unrelated term (review: ``traiter`` ->
    ``tiraiter`` -> ``tir``, ``protéase`` -> ``port``, ``lipide`` -> ``lip``)."""
    idx = BM25Index()
    docs = ["Appliquer le gel deux fois.", "Le port du masque.", "Un lac de montagne.", "Tir sportif en plein air.",
            "Les communications du comité (comm).", "La lipase pancréatique."]
    idx.add([str(i) for i in range(len(docs))], docs)
    for query in ("gélules", "protéase", "lactique", "comment traiter", "lipide"):
        assert idx.query_terms(query) == [], query
    long = "a" * 40 + "mine"
    assert idx.query_terms(long) == []  # too long to be read (the edits grow with its square)
    # only the term's own edits: a stem of an edited word is not read (it read correct words no passage
    # holds as a shorter relative, caractéristique as caractère; a typo that changes what the stemmer
    # strips, vascularittes against vascular, is the price)
    idx.add(["g", "v", "c"], ["La gliose réactionnelle.", "Les vascularites.", "Le caractère de la douleur."])
    assert idx.query_terms("glissement") == [] and idx.query_terms("caractéristique douleur") == ["douleur"]
    assert idx.query_terms("vascularittes") == [] and idx.query_terms("vasculrites") == ["vascular"]


def test_at_most_a_few_unknown_words_of_a_query_are_read_as_typos() -> None:
    from medrag.lexical.bm25 import TYPO_MAX_TERMS

    idx = BM25Index()
    idx.add(["a"], ["metformine"])
    filler = " ".join("zzqx" + "abcdefghij"[i] + "abcdefghij"[-i] + "ou" for i in range(TYPO_MAX_TERMS))
    assert idx.query_terms("metformne") == ["metformin"]
    assert idx.query_terms(f"{filler} metformne") == []  # the budget went to the filler
    # numbers, codes and short words are never read as typos: they spend none of it
    assert idx.query_terms("T 38,5 CRP 145 15 200 3 j 12 7,2 140 toux nez dos cou metformne") == ["metformin"]


def test_one_long_token_does_not_pad_every_term_of_the_file(tmp_path, index: BM25Index) -> None:
    """Format 1 stored the vocabulary and ids as fixed-width unicode arrays: one 4,000-character
    token (a URL, a PDF extraction without spaces) made every term 16 kB, a 0.7 MB index 320 MB (review)."""
    for i in range(200):
        index.add([f"extra-{i}"], [f"mot{i} terme{i} notice{i} posologie"])
    index.save(tmp_path / "small.npz")
    index.add(["long"], ["x" * 4000])
    index.save(tmp_path / "long.npz")
    small, long = (tmp_path / "small.npz").stat().st_size, (tmp_path / "long.npz").stat().st_size
    assert long - small < 10_000, (small, long)
    loaded = BM25Index.load(tmp_path / "long.npz")
    assert loaded.ids == index.ids and loaded.search("x" * 4000, k=1)[0] == ["long"]


def test_a_format_1_file_still_loads(tmp_path, index: BM25Index) -> None:
    """Stores written before format 2 keep their lexical index (the next save writes format 2)."""
    import json as _json

    path = tmp_path / "v1.npz"
    index.save(path)
    with np.load(path) as data:
        meta, lengths, terms = _json.loads(str(data["meta"])), data["lengths"], data["terms"]
    np.savez(path, meta=np.array(_json.dumps({**meta, "format": 1})), ids=np.array(index.ids, dtype=str),
             vocab=np.array(list(index._vocab), dtype=str), lengths=lengths, terms=terms)
    loaded = BM25Index.load(path)
    assert loaded.ids == index.ids and loaded.search("INR", k=2)[0] == index.search("INR", k=2)[0]
    loaded.save(path)
    with np.load(path) as data:
        assert _json.loads(str(data["meta"]))["format"] == 2


def test_the_k_best_are_a_prefix_of_the_full_ranking_when_scores_tie() -> None:
    """argpartition picked an arbitrary subset of the rows tied at the k-th score: search(q, 1) gave
    a later row than the full ranking's first, and the hybrid's candidates depended on k (review)."""
    idx = BM25Index()
    idx.add([f"d{i}" for i in range(8)], ["ferritine basse"] * 8)
    full = idx.search("ferritine", k=8)[0]
    assert full == [f"d{i}" for i in range(8)]
    for k in range(1, 9):
        assert idx.search("ferritine", k=k)[0] == full[:k]
        assert idx.search("ferritine", k=k, ids={f"d{i}" for i in range(7, -1, -1)})[0] == full[:k]


def test_an_acronym_query_is_not_read_as_a_common_word_or_a_letter() -> None:
    """``VS`` was read as ``v`` (the letter of "facteur V": lowercase ``vs`` stems to it) and ``AINS``
    / ``ains`` as ``ain`` (the adverb "ainsi" stemmed twice), because more passages held those:
    the passage with the acronym had no BM25 match (user tryout)."""
    idx = BM25Index()
    idx.add(["vs", "fv1", "fv2", "ains", "ainsi1", "ainsi2"], [
        "La vitesse de sédimentation (VS) mesure la chute des globules rouges en une heure.",
        "Le taux de prothrombine explore notamment le facteur V.",
        "La chute du facteur V est un critère de gravité de l'insuffisance hépatique.",
        "Les AINS sont contre-indiqués au troisième trimestre de la grossesse.",
        "Le diabète se traite ainsi : régime, activité physique, puis metformine.",
        "La fièvre de l'enfant se surveille ainsi : température, hydratation.",
    ])
    for query, best in [("VS", "vs"), ("VS élevée", "vs"), ("AINS", "ains"), ("ains", "ains"), ("facteur V", "fv1")]:
        assert idx.search(query, k=1)[0] == [best], query
    assert idx.query_terms("ainsi") == []  # a stopword


def test_a_query_made_mostly_of_codes_names_the_documents_holding_them_all() -> None:
    """``QueryScores.holders``: what an identifier lookup puts first (``None`` for another query)."""
    from medrag.lexical.bm25 import is_identifier_term

    index = BM25Index()
    index.add(["a", "b", "c", "d"], ["Code ATC N02BE01, code CIP 3400936379848.", "Code ATC N02BE01 seulement.",
                                     "L'HbA1c cible est de 7 %.", "Un texte sans code."])
    assert index.query_scores("3400936379848").holders == {"a"}
    assert index.query_scores("ATC N02BE01").holders == {"a", "b"}  # 1 code of 2 terms: a lookup
    assert index.query_scores("N02BE01 3400936379848").holders == {"a"}  # every code
    assert index.query_scores("hba1c cible").holders == {"c"}
    assert index.query_scores("quelle est la cible de l'HbA1c chez le diabétique").holders is None
    assert index.query_scores("un texte").holders is None and index.query_scores("N02BE02").holders is None
    assert index.query_scores("N02BE01 3400000000000").holders == {"a", "b"}  # a code no document holds is not scored
    assert [is_identifier_term(t) for t in ("cyp3a4", "100000", "4a21b", "b12", "1000", "7,0", "covid-19", "j05a")] == [
        True, True, True, False, False, False, False, True]
    # a number glued to a French word is no code (review): ordinals, ages and durations, products
    assert not any(map(is_identifier_term, ("2eme", "1ere", "3emes", "18ans", "6mois", "3jours", "3x10", "2nd")))
    index.add(["e"], ["En 2ème ligne de traitement."])
    assert index.query_scores("2ème ligne").holders is None
    assert BM25Index().query_scores("N02BE01").holders is None  # an empty index


def test_a_saved_index_holds_only_the_terms_of_its_texts(tmp_path) -> None:
    """A deleted text's terms stay in the in-memory vocabulary, not in the file (right to erasure);
    the file still loads to the same scores."""
    index = BM25Index()
    index.add(["a", "b", "c"], ["Ferritine basse, carence martiale.", "Patient Zorbulinek, NIP 7734219881.",
                                "Troponine élevée : infarctus."])
    index.delete(["b"])
    index.save(tmp_path / "i.npz")
    with np.load(tmp_path / "i.npz", allow_pickle=False) as data:
        vocab = set(_unpack_strings(data["vocab"], data["vocab_ends"], tmp_path / "i.npz"))
    assert "zorbulinek" not in vocab and "7734219881" not in vocab and {"ferritin", "troponin"} <= vocab
    loaded = BM25Index.load(tmp_path / "i.npz")
    for query in ("ferritine carence", "troponine infarctus", "Zorbulinek"):
        assert loaded.scores(query) == pytest.approx(index.scores(query))
    loaded.add(["d"], ["Zorbulinek revu en consultation."])  # the reloaded vocabulary grows as before
    assert loaded.search("Zorbulinek", k=2)[0] == ["d"]


def test_an_icd10_code_is_one_term_and_ranks_its_holder_first() -> None:
    """E11.9 was read as e11 + 9: a passage holding E11.2 and a stray 9 matched as well as the one holding
    E11.9, which hybrid search ranked last of three (user tryout); E119, the code typed without its
    dot, matched nothing."""
    index = BM25Index()
    index.add(["e119", "e109", "e112"], ["Diabète de type 2 non compliqué (E11.9), suivi annuel.",
                                         "Diabète de type 1 sans complication (E10.9).",
                                         "Diabète de type 2 avec atteinte rénale (E11.2) ; glycémie à 9 mmol/L."])
    for query in ("E11.9", "diagnostic E11.9", "e11,9", "E119"):
        ids, _ = index.search(query, 3)
        assert ids[0] == "e119", (query, ids)
    assert set(index.search("E11", 3)[0]) == {"e119", "e112"}  # the category finds its codes

