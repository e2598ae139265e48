"""The French medical analyzer: elisions, stopwords, stems, accents, medical tokens, signature."""

from __future__ import annotations

import pytest

from medrag.errors import InvalidInputError, MedragError
from medrag.lexical.analyzer import AnalyzerOptions, FrenchMedicalAnalyzer, fold_accents


@pytest.fixture()
def analyzer() -> FrenchMedicalAnalyzer:
    return FrenchMedicalAnalyzer()


def test_inflected_and_unaccented_forms_meet(analyzer: FrenchMedicalAnalyzer) -> None:
    assert analyzer("hémoglobine") == analyzer("Hemoglobine") == analyzer("hémoglobines")
    assert analyzer("diabétique") == analyzer("diabétiques") == ["diabet"]


@pytest.mark.parametrize("apostrophe", ["'", "\u2019", "\u02bc"])
def test_elisions_split_with_every_apostrophe(analyzer: FrenchMedicalAnalyzer, apostrophe: str) -> None:
    text = f"l{apostrophe}insuline d{apostrophe}action qu{apostrophe}il jusqu{apostrophe}au s{apostrophe}agit"
    assert analyzer(text) == ["insulin", "action", "agit"]


def test_elision_split_without_stopwords() -> None:
    analyzer = FrenchMedicalAnalyzer(AnalyzerOptions(stopwords=False))
    assert analyzer("l'insuline") == ["insulin"]
    keep = FrenchMedicalAnalyzer(AnalyzerOptions(stopwords=False, split_elisions=False))
    assert keep("l'insuline") == ["l", "insulin"]


def test_stopwords_dropped(analyzer: FrenchMedicalAnalyzer) -> None:
    assert analyzer("le la les de des du et est à une") == []
    assert FrenchMedicalAnalyzer(AnalyzerOptions(stopwords=False))("le patient") == ["le", "patient"]
    extra = FrenchMedicalAnalyzer(AnalyzerOptions(extra_stopwords=("Patient",)))
    assert extra("le patient fébrile") == ["febril"]


def test_medical_tokens_kept_whole(analyzer: FrenchMedicalAnalyzer) -> None:
    assert analyzer("HbA1c, T4L, CD4, B12, COVID-19, IL-6") == ["hba1c", "t4l", "cd4", "b12", "covid-19", "il-6"]
    assert analyzer("HbA1c à 6,5 %") == ["hba1c", "6,5", "%"]
    assert analyzer("6.5%") == analyzer("6,5 %")
    assert analyzer("500 mg/dl") == ["500", "mg", "dl"]


def test_alphanumeric_off_splits_on_digits() -> None:
    analyzer = FrenchMedicalAnalyzer(AnalyzerOptions(keep_alphanumeric=False))
    assert analyzer("HbA1c 6,5") == ["hba", "1", "6", "5"]


def test_hyphens_and_acronyms() -> None:
    assert FrenchMedicalAnalyzer()("anti-inflammatoire") == ["anti", "inflammatoir"]
    compound = FrenchMedicalAnalyzer(AnalyzerOptions(split_hyphens=False))
    assert compound("anti-inflammatoire") == ["anti-inflammatoir"]
    stemmed = FrenchMedicalAnalyzer(AnalyzerOptions(keep_acronyms=False))
    assert stemmed("AINS") == stemmed("ains") == ["ain"]
    assert FrenchMedicalAnalyzer()("AINS") == ["ains"] and FrenchMedicalAnalyzer()("ains") == ["ain"]
    assert FrenchMedicalAnalyzer()("A") == []  # a one-letter capital is not an acronym


def test_no_stemming_no_folding() -> None:
    analyzer = FrenchMedicalAnalyzer(AnalyzerOptions(stem=False, fold_accents=False))
    assert analyzer("Hémoglobines glyquées") == ["hémoglobines", "glyquées"]
    assert fold_accents("œdème à Besançon") == "oedeme a Besancon"


def test_signature_stable_and_option_sensitive() -> None:
    a, b = FrenchMedicalAnalyzer(), FrenchMedicalAnalyzer(AnalyzerOptions())
    assert a.signature == b.signature and len(a.signature) == 16
    assert FrenchMedicalAnalyzer(AnalyzerOptions(stem=False)).signature != a.signature
    assert FrenchMedicalAnalyzer(AnalyzerOptions(extra_stopwords=("b", "a"))).signature == FrenchMedicalAnalyzer(
        AnalyzerOptions(extra_stopwords=("A", "b"))
    ).signature


def test_cache_gives_same_terms(analyzer: FrenchMedicalAnalyzer) -> None:
    text = "Le patient diabétique a une HbA1c élevée."
    assert analyzer(text) == analyzer(text) == analyzer.analyze_many([text, text])[1]


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        FrenchMedicalAnalyzer()(None)  # type: ignore[arg-type]
    with pytest.raises(MedragError):
        AnalyzerOptions(extra_stopwords="patient")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        FrenchMedicalAnalyzer({"stem": True})  # type: ignore[arg-type]


def test_a_decimal_glued_to_its_unit_stays_whole(analyzer: FrenchMedicalAnalyzer) -> None:
    """``0,5mg`` gave ``0`` and ``5mg``: a query for 5mg matched the 0,5 mg document."""
    assert analyzer("warfarine 0,5mg") == ["warfarin", "0,5", "mg"]
    assert analyzer("1,5g/j et 12,5 mg") == ["1,5", "g", "12,5", "mg"]  # "j" is a stopword
    assert "5mg" not in analyzer("0,5mg")


def test_decomposed_accents_give_the_composed_terms(analyzer: FrenchMedicalAnalyzer) -> None:
    """NFD text (macOS copy-paste, PDF extraction) was split inside words: ``he``, ``moglobin``."""
    import unicodedata

    text = "Hémoglobine et fièvre chez l'enfant"
    assert analyzer(unicodedata.normalize("NFD", text)) == analyzer(text) == ["hemoglobin", "fievr", "chez", "enfant"]


def test_all_capital_prose_is_read_as_words_acronyms_stay(analyzer: FrenchMedicalAnalyzer) -> None:
    """Stopwords written in capitals were kept (``LE``, ``EST``, ``ET`` matched headings) and
    headings were not stemmed (``CONTRE-INDICATIONS`` missed ``contre-indications``)."""
    assert analyzer("LE PATIENT EST SOUS AVK") == ["patient", "sous", "avk"]
    assert analyzer("CONTRE-INDICATIONS") == analyzer("contre-indications")
    assert analyzer("AINS ET AVK") == ["ains", "et", "avk"]  # no word longer than an acronym: acronyms
    assert analyzer("Relais des AVK par héparine.") == ["rel", "avk", "heparin"]
    assert FrenchMedicalAnalyzer(AnalyzerOptions(keep_acronyms=False))("LE PATIENT") == ["patient"]


def test_a_whole_number_glued_to_a_unit_is_the_number_and_the_unit(analyzer: FrenchMedicalAnalyzer) -> None:
    """``1000mg`` was one term: a query for "Doliprane 1000 mg" missed the leaflet that wrote 1000mg."""
    assert analyzer("Doliprane 1000mg") == analyzer("Doliprane 1000 mg") == ["dolipran", "1000", "mg"]
    assert analyzer("500MG, 24h, 5µg/kg, 140mmHg") == ["500", "mg", "24", "h", "5", "μg", "kg", "140", "mmhg"]
    assert analyzer("3j") == analyzer("3 j") == ["3"]  # "j" (jours) is a stopword either way
    # not units: technetium 99m, ordinals, analytes and vitamins stay whole
    assert analyzer("99mTc 99m 2e 1er B12 T4L") == ["99mtc", "99m", "2e", "1er", "b12", "t4l"]
    assert analyzer("10mn, 5ug, 80fl") == ["10", "mn", "5", "ug", "80", "fl"]
    # ranges read as their numbers and unit, like the en-dash form; hyphenated names stay whole
    assert analyzer("5-10mg") == analyzer("5–10mg") == analyzer("5 - 10 mg") == ["5", "10", "mg"]
    assert analyzer("1g-2g") == ["1", "g", "2", "g"]
    assert analyzer("COVID-19, IL-6, 40mg-jour") == ["covid-19", "il-6", "40mg-jour"]
    whole = FrenchMedicalAnalyzer(AnalyzerOptions(split_units=False))
    assert whole("1000mg") == ["1000mg"] and whole("5-10mg") == ["5-10mg"] and whole.signature != analyzer.signature


def test_a_word_typed_without_accents_has_the_accented_words_term(analyzer: FrenchMedicalAnalyzer) -> None:
    """Stemming before folding gave ``élevée`` -> ``elev`` but ``elevee`` -> ``eleve``."""
    for accented in ("élevée", "traitée", "administrée", "augmentées", "hépatique", "œdème", "été", "même", "étaient"):
        assert analyzer(accented) == analyzer(fold_accents(accented)), accented
    assert analyzer("élevée") == analyzer("élevé") == ["elev"]
    before = FrenchMedicalAnalyzer(AnalyzerOptions(fold_before_stem=False))  # analyzer version 2
    assert before("élevée") == ["elev"] and before("elevee") == ["eleve"]
    assert before.signature != analyzer.signature
    # without folding the option has nothing to do: the accented word is stemmed once
    assert FrenchMedicalAnalyzer(AnalyzerOptions(fold_accents=False))("élevée") == ["élev"]
