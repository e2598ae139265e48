"""A French medical text analyzer for lexical (BM25) search.

Text becomes index terms in one pass: elided articles are split off (``l'insuline`` ->
``insuline``, straight and typographic apostrophes), French stopwords dropped, words
accent-folded and reduced to their Snowball French stem (PyStemmer, the C Snowball
implementation), so ``hémoglobine``, ``hemoglobine`` and ``hémoglobines`` meet on one term,
and a word's term never depends on whether its accents were typed (``élevée`` and ``elevee``
-> ``elev``). Medical tokens that a stemmer would mangle are kept whole: letters-and-digits
tokens (``HbA1c``, ``T4L``, ``CD4``, ``B12``, ``COVID-19``, ``99mTc``), numbers with their
decimal comma (``6,5`` and ``6.5`` both become ``6,5``; ``5,0`` is ``5``) and without their thousands spaces
(``10 000``, ``100 000 UI``: ``10000``, ``100000``, as they are also typed), and the percent / per-mille signs;
a number glued to a unit is read as the number and the unit (``500mg`` as ``500 mg``,
``24h`` as ``24 h``: :data:`UNITS`), and a unit keeps its own term, unstemmed, even when it is
also a stopword: ``mg/l``, ``mg/j`` and ``mg`` are three different things (``l`` and ``j`` after a
number or in a ratio of units), and ``µg``, ``μg``, ``ug``, ``mcg``, ``microgrammes`` one (a unit written out has
its symbol's term: :data:`UNIT_NAMES`); the units of time meet the
words they abbreviate (``3 g/j`` = ``3 g par jour``, ``24 h`` = ``24 heures``); clinical notations
of numbers are read as their plain forms (``38°5`` = ``38,5``; ``150 × 10⁹/L`` = ``150x10^9/l``: ``150``,
``10^9``, ``l``).

Why these choices: stemming and accent folding are what French BM25 needs to match
inflected forms (Savoy, "A stemming procedure and stopword list for general French
corpora", JASIS 1999); the elision split is the one every French Lucene analyzer does
(``ElisionFilter``). Folding comes *before* stemming, and the folded word is stemmed twice:
Snowball's rules read accents, so stemming first gave a word typed without accents another
term than its accented form for 18.5% of the accented word occurrences in the suite's val
passages (``élevée`` -> ``élev`` but ``elevee`` -> ``eleve``; 0% now: ``docs/results.md``, "Hybrid
retrieval", with its command), and one pass over folded text leaves the participle endings that
the accents marked (``elevee`` -> ``eleve`` -> ``elev``).
Measured on the validation suite's val part (``benchmarks/analyzer_ablation.py``): this analyzer
beats whitespace splitting by 16% (100 x 300 per domain) to 30% (300 x 3,000) of BM25's NDCG@10.

Every option lives in :class:`AnalyzerOptions`; :attr:`FrenchMedicalAnalyzer.signature`
is a stable fingerprint of them, which a lexical index stores so that an index built with
another analyzer is detected and rebuilt.

Example::

    >>> from medrag.lexical.analyzer import FrenchMedicalAnalyzer
    >>> FrenchMedicalAnalyzer()("L'HbA1c du patient diabétique est à 6,5 %.")
    ['hba1c', 'patient', 'diabet', '6,5', '%']
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property

from medrag.errors import InvalidInputError

#: Bumped whenever the analysis of a given text changes for the same options (2: NFC
#: normalisation, a decimal glued to its unit split from it, stopwords dropped from all-capital texts;
#: 3: ``split_units`` and ``fold_before_stem``, which also drops stopwords typed without accents;
#: 4: a unit's own term: ``l`` and ``j`` kept after a number and in a ratio ``mg/l``, units not
#: stemmed, micro written ``u``; a lone capital letter kept: ``vitamine D``, ``hépatite C``;
#: 5: ``join_thousands``: ``10 000`` read as ``10000``; 6: ``unit_words``: the units ``j``, ``h``, ``min``
#: have the terms of ``jour``, ``heure``, ``minute``; 7: a narrow no-break or a thin space (French
#: typography's, common in texts from word processors) separates a number from its unit as a space
#: does: ``3\u202fj`` kept its number only, ``j`` read as the stopword; thousands spaced by a thin space
#: are joined too; 8: a hyphenated token holding a digit (``COVID-19``, ``IL-6``, ``β2-mimétiques``) also
#: has its parts' terms, Greek letters are read as their French names (``β-bloquant`` = ``bêta-bloquant``),
#: soft hyphens and joiners are dropped, the non-breaking hyphens read as ``-``, and ``extra_stopwords``
#: drop a word typed in capitals too; ``ainsi`` is a stopword; 9: clinical notations of numbers: a
#: temperature ``38°5`` read as ``38,5``, powers of ten ``10⁹``, ``10^9``, ``10*9`` as one term ``10^9``,
#: apart from the count they multiply: ``150 × 10⁹/L``, ``150x10^9/l``, ``150.10⁹/L`` -> ``150``, ``10^9``, ``l``;
#: 10: units written out have their symbol's term (``microgrammes`` = ``µg``, ``milligramme`` = ``mg``:
#: :data:`UNIT_NAMES`; the shared drug leaflets write ``microgramme(s)`` 3,775 times, ``µg``/``mcg`` 137), and a decimal
#: ends without its trailing zeros when it has one or two decimals (``5,0`` = ``5``, ``0,50`` = ``0,5``;
#: ``1.000``, three decimals, may be a thousands group and stays); 11: an ICD-10 code is one token with
#: the terms of its code typed without the dot and of its category (``E11.9`` -> ``e119``, ``e11``;
#: the suite's val scores are unchanged: it holds no such code)).
ANALYZER_VERSION = 11

#: The Snowball French stopword list (snowballstem.org, BSD licence), plus ``a`` (``il a``) and
#: ``ainsi`` (in Savoy's and Lucene's French lists; stemmed twice it is ``ain``, the word reading of the
#: acronym ``AINS`` typed in lowercase, so ``ains`` found the passages saying "ainsi").
FRENCH_STOPWORDS: frozenset[str] = frozenset(
    """a ai aie aient aies ait as au aura aurai auraient aurais aurait auras aurez auriez aurions aurons auront
    aux avaient avais avait avec avez aviez avions avons ayant ayante ayantes ayants ayez ayons c ce ces d dans
    de des du elle en es est et eu eue eues eurent eus eusse eussent eusses eussiez eussions eut eux eûmes eût
    eûtes furent fus fusse fussent fusses fussiez fussions fut fûmes fût fûtes il ils j je l la le les leur lui
    m ma mais me mes moi mon même n ne nos notre nous on ont ou par pas pour qu que qui s sa se sera serai
    seraient serais serait seras serez seriez serions serons seront ses soient sois soit sommes son sont soyez
    soyons suis sur t ta te tes toi ton tu un une vos votre vous y à étaient étais était étant étante étantes
    étants étiez étions été étée étées étés êtes ainsi""".split()
)

#: Elided prefixes split off a word (``l'``, ``qu'``, ``jusqu'``...).
ELISIONS: frozenset[str] = frozenset({"l", "d", "j", "n", "s", "c", "m", "t", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu"})
_APOSTROPHES = "'\u2019\u02bc\u2018\u00b4"
_APOSTROPHE_RE = re.compile(f"[{_APOSTROPHES}]")

_NUMBER = r"\d+[.,]\d+"  # a unit glued to it ("0,5mg") is the next token: 0,5 must not become 0 and 5mg
#: A number written with spaced groups of three digits (``10 000``, ``1 000 000``, ``2 500,5``; French
#: typography: any of :data:`_SPACES`), not after a digit or a decimal point.
#: It starts with a digit, its lookbehind after it: a leading lookbehind was tried at every character
#: (tokenising took longer; the same tokens).
#: The spaces French typography puts inside a number or before its unit: a space, a no-break space,
#: a narrow no-break space (U+202F) or a thin space (U+2009).
_SPACES = " \u00a0\u202f\u2009"
_THOUSANDS = f"\\d(?<![\\d.,]\\d)\\d{{0,2}}(?:[{_SPACES}]\\d{{3}})+(?:[.,]\\d+)?(?!\\d)"
_THOUSANDS_SPACE = re.compile(f"(?<=\\d)[{_SPACES}](?=\\d)")
#: A number and a unit that is also a stopword (``5 l``, ``1,5L``, ``3 j``): one token, so the unit stays.
#: It is an optional tail of a number's or a word's token (after a digit only; not "2020 l'épidémie").
_STOPWORD_UNIT = f"(?:(?<=\\d)[{_SPACES}]?[lLjJ](?![^\\W_]|[{_APOSTROPHES}]))?"
_STOPWORD_UNIT_PARTS = re.compile(f"(.*\\d)[{_SPACES}]?([lLjJ])")
_DECIMAL = re.compile(_NUMBER)
#: French clinical notes write a temperature's decimal with the degree sign (``38°5``, ``37°2``: 38.5 °C;
#: also ``º``, the ordinal indicator typed for it): two digits, the sign, one digit; read as ``38,5``,
#: as ``38,5 °C`` and ``38.5°C`` are. The patterns here start with the character they look for, so the
#: regex engine skips to it (a leading lookbehind made analysis 1.7x slower).
_DEGREE_DECIMAL = re.compile(r"[°º](?<=(?<![\d,.])\d\d[°º])(?=\d(?!\d|[.,]\d))")
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
#: A power of ten as laboratory reports write it (``10⁹``, ``10⁻³``, ``10^9``, ``10^-3``, UCUM's ``10*9``):
#: rewritten `` 10^9``, one term (before, ``10⁹`` became ``109`` and ``150x10^9`` the terms ``150x10``, ``9``);
#: then :data:`_TIMES_POWER` parts it from the count it multiplies (``150 × 10⁹``, ``150x10^9``, ``150.10⁹``).
#: ``*`` only in UCUM's unit form, unspaced before a ratio (``10*9/L``): ``10 * 12 mm`` is a size.
_POWER_OF_TEN = re.compile(f"10(?<![\\d,]10)(?:[{_SPACES}]*\\^[{_SPACES}]*([-−]?)(\\d{{1,2}})|\\*\\*?(\\d{{1,2}})(?=/)"
                           f"|(⁻?)([{_SUPERSCRIPTS}]{{1,2}}))(?![\\d{_SUPERSCRIPTS}])")
_TIMES_POWER = re.compile(f"(?<=\\d)[{_SPACES}]*[x×X*·.][{_SPACES}]* 10\\^")
_POWER_TERM = r"10\^-?\d{1,2}(?!\d)"
_POWER = re.compile(_POWER_TERM)
_SUPERSCRIPT_DIGITS = str.maketrans(_SUPERSCRIPTS, "0123456789")


def _power_of_ten(match: re.Match[str]) -> str:
    sign = "-" if (match.group(1) or match.group(4)) else ""
    digits = (match.group(2) or match.group(3) or match.group(5)).translate(_SUPERSCRIPT_DIGITS)
    return f" 10^{sign}{int(digits)}"


def _clinical_numbers(text: str) -> str:
    """``text`` with the clinical notations of numbers rewritten: ``38°5`` -> ``38,5``, ``150 × 10⁹``
    -> ``150 10^9`` (:data:`_DEGREE_DECIMAL`, :data:`_POWER_OF_TEN`)."""
    if "°" in text or "º" in text:
        text = _DEGREE_DECIMAL.sub(",", text)
    if "10" in text:
        powers = _POWER_OF_TEN.sub(_power_of_ten, text)
        if powers != text:
            text = _TIMES_POWER.sub(" 10^", powers)
    return text
#: Parts joined by hyphens or apostrophes, or by slashes before a letter (``mg/l``, ``mg/kg/j``: the
#: parts of a unit ratio; ``microgrammes/0,5 ml`` keeps its decimal).
_WORD = f"[^\\W_]+(?:[-{_APOSTROPHES}][^\\W_]+|/[^\\W\\d_][^\\W_]*)*"
_SIGN = r"[%\u2030]"
#: An ICD-10 (CIM-10) code with its subcategory (``E11.9``, ``J45.0``, ``S72.00``; a comma typed for the
#: dot too): one token (the dot split it into ``e11`` and ``9``, and a passage holding ``E11.2`` and a
#: stray ``9`` matched ``E11.9`` as well as the passage holding it: user tryout).
_ICD_CODE = f"(?:(?:[cdjlmnstCDJLMNST]|[qQ][uU])[{_APOSTROPHES}])?[A-Za-z]\\d\\d[.,]\\d{{1,2}}(?![^\\W_]|[.,]\\d)"
_ICD = re.compile(_ICD_CODE)
#: Possessive quantifiers (Python 3.11) matched wrongly until 3.11.5 (CPython gh-106052, gh-100061):
#: on Debian 12's 3.11.2 "ferritine basse" gave the tokens ['ferritine', '', 'basse', ''] and hybrid
#: search an IndexError.
POSSESSIVE_SINCE = (3, 11, 5)


def _token_pattern(version: tuple[int, ...], thousands: bool = True) -> str:
    """The token pattern (``thousands``: spaced thousands first, one token). Its repeats never need to
    give characters back (a word's letters, its joiners and its unit tail are disjoint classes), so
    from :data:`POSSESSIVE_SINCE` on they are made possessive (``++``, ``*+``, ``?+``): the same
    tokens, faster, which pays for the unit tail."""
    pattern = ((f"{_THOUSANDS}{_STOPWORD_UNIT}|" if thousands else "")
               + f"{_POWER_TERM}(?:/[^\\W\\d_][^\\W_]*)*{_STOPWORD_UNIT}|{_ICD_CODE}|{_NUMBER}{_STOPWORD_UNIT}|"
               f"{_WORD}{_STOPWORD_UNIT}|{_SIGN}")
    if tuple(version[:3]) >= POSSESSIVE_SINCE:
        pattern = pattern.replace("]+", "]++").replace(")*", ")*+").replace("]*", "]*+").replace(")?", ")?+")
    return pattern


_TOKEN = _token_pattern(sys.version_info)
_TOKEN_SPACED_GROUPS = _token_pattern(sys.version_info, thousands=False)
#: Units read apart from a whole number glued to them (``500mg`` -> ``500``, ``mg``), compared
#: lowercased. Not ``m`` (``99m`` technetium) nor ordinals (``2e``, ``1er``), which stay whole.
UNITS: frozenset[str] = frozenset(
    """mg g kg µg μg ug mcg ng pg ml l dl cl µl μl ul fl mmol µmol μmol umol nmol pmol mol meq ui mui u
    h min mn j mm cm mmhg kcal cal ms gy mgy bq mbq kbq""".split()
)
_GLUED_UNIT = re.compile(r"(\d+)([^\W\d_]+)")
#: Units written out (accents folded, singular and plural) and the unit whose term they have, with
#: ``split_units`` (analyzer version 10): a query ``500 µg`` finds the leaflets that write
#: ``500 microgrammes``, and ``50 microgrammes`` the ones that write ``50 µg``.
UNIT_NAMES = {f"{name}{plural}": unit for name, unit in (
    ("microgramme", "ug"), ("milligramme", "mg"), ("nanogramme", "ng"), ("picogramme", "pg"), ("gramme", "g"),
    ("kilogramme", "kg"), ("litre", "l"), ("millilitre", "ml"), ("microlitre", "ul"), ("decilitre", "dl"),
    ("centilitre", "cl"), ("femtolitre", "fl"), ("gray", "gy"), ("calorie", "cal"),
    ("millimole", "mmol"), ("micromole", "umol"), ("nanomole", "nmol"), ("picomole", "pmol"),
    ("milliequivalent", "meq"), ("kilocalorie", "kcal"), ("millimetre", "mm"), ("centimetre", "cm"),
    ("becquerel", "bq"), ("megabecquerel", "mbq"), ("kilobecquerel", "kbq"), ("milligray", "mgy"))
    for plural in ("", "s")}
#: A decimal with one or two decimals ending in zeros (``5,0``, ``0,50``, ``7,00``): read without them.
_TRAILING_ZEROS = re.compile(r"(\d+)(?:,0{1,2}|(,\d)0)")
#: Units of time read as the word they abbreviate (``unit_words``): ``3 j`` as ``3 jours``, ``g/j`` as
#: ``g par jour``, ``24 h`` as ``24 heures``, ``10 min`` as ``10 minutes``.
UNIT_WORDS = {"j": "jour", "h": "heure", "min": "minute", "mn": "minute"}
#: Capital letters that are mostly words, not names: ``A`` is ``à`` written without its accent
#: ("A jeun", "N'hésitez pas A...": the shared leaflets' most frequent lone capital), ``Y`` is ``y``.
_NOT_LETTER_NAMES = frozenset("AY")
#: An all-capital text holding a word longer than an acronym is shouted prose (``keep_acronyms``).
_LONGER_THAN_ACRONYM = re.compile(r"[^\W\d_]{7,}")
#: Options of :class:`AnalyzerOptions` that change how queries are read, not what is indexed: left
#: out of the analyzer's signature and of an index file (toggling one rebuilds nothing).
QUERY_SIDE_OPTIONS = frozenset({"typo_tolerance"})
#: Greek letters as French medical text spells them out (``β-bloquant`` / ``bêta-bloquant``,
#: ``α-fœtoprotéine`` / ``alpha-fœtoprotéine``, ``γ-GT`` / ``gamma-GT``, ``Δ9-THC``); not ``μ``, the
#: micro of units (``μg``, :data:`UNITS`).
GREEK_NAMES = {
    "α": "alpha", "β": "bêta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zêta", "η": "êta",
    "θ": "thêta", "ι": "iota", "κ": "kappa", "λ": "lambda", "ν": "nu", "ξ": "xi", "ο": "omicron", "π": "pi",
    "ρ": "rhô", "σ": "sigma", "ς": "sigma", "τ": "tau", "υ": "upsilon", "φ": "phi", "χ": "khi", "ψ": "psi",
    "ω": "oméga", "Α": "alpha", "Β": "bêta", "Γ": "gamma", "Δ": "delta", "Ε": "epsilon", "Ζ": "zêta",
    "Η": "êta", "Θ": "thêta", "Ι": "iota", "Κ": "kappa", "Λ": "lambda", "Ν": "nu", "Ξ": "xi", "Ο": "omicron",
    "Π": "pi", "Ρ": "rhô", "Σ": "sigma", "Τ": "tau", "Υ": "upsilon", "Φ": "phi", "Χ": "khi", "Ψ": "psi",
    "Ω": "oméga",
}
_GREEK = re.compile(f"[{''.join(GREEK_NAMES)}]")
#: Invisible characters inside words (soft hyphen: ``hémo\u00adglobine`` from a PDF or a word processor,
#: zero-width and word joiners, a stray byte-order mark), dropped; the hyphen and the non-breaking
#: hyphen (U+2010, U+2011), read as ``-``.
_INVISIBLE = re.compile("[\u00ad\u200d\u2060\ufeff]")
_UNICODE_HYPHENS = re.compile("[\u2010\u2011]")
_SPECIAL = re.compile(f"[\u00ad\u200d\u2060\ufeff\u2010\u2011{''.join(GREEK_NAMES)}]")


def spell_greek(text: str) -> str:
    """``text`` with its Greek letters spelled out as words (:data:`GREEK_NAMES`), joined by a
    hyphen to the letters or digits they touch, so ``β2-mimétiques`` reads as ``bêta-2-mimétiques``
    and ``βhCG`` as ``bêta-hCG``.

    >>> spell_greek("β-bloquant, α-fœtoprotéine, βhCG, β2 et 5α-réductase")
    'bêta-bloquant, alpha-fœtoprotéine, bêta-hCG, bêta-2 et 5-alpha-réductase'
    """
    def name(match: re.Match[str]) -> str:
        i, j = match.start(), match.end()
        before = "-" if i > 0 and text[i - 1].isalnum() else ""
        after = "-" if j < len(text) and text[j].isalnum() else ""
        return before + GREEK_NAMES[match.group()] + after

    return _GREEK.sub(name, text)


#: Distinct surface tokens whose terms are cached (a few hundred MB at most on any corpus).
TOKEN_CACHE_LIMIT = 2_000_000


@dataclass(frozen=True)
class AnalyzerOptions:
    """What :class:`FrenchMedicalAnalyzer` does; every field is part of the signature.

    - ``stem``: Snowball French stems (PyStemmer).
    - ``fold_accents``: strip diacritics.
    - ``fold_before_stem``: with ``fold_accents``, drop stopwords typed without accents too
      (``ete``, ``meme``) and, with ``stem`` as well, fold the word first and stem the folded word
      twice, so a word typed without accents has the same term as its accented form (``élevée``,
      ``elevee`` -> ``elev``); off, stem the accented word once, then fold (analyzer version 2,
      where ``elevee`` -> ``eleve``). +0.0012 / +0.0027 macro BM25 NDCG@10 on the suite's val part
      (pilot 100 x 300 / 300 x 3,000), +0.0033 / +0.0075 with the queries typed without accents.
    - ``split_elisions``: drop ``l'``, ``d'``, ``qu'``, ``j'``, ``n'``, ``s'``, ``c'``, ``m'``, ``t'``
      (and ``jusqu'``, ``lorsqu'``...) before a word.
    - ``stopwords``: drop the Snowball French stopwords.
    - ``keep_alphanumeric``: keep letters-and-digits tokens (``HbA1c``, ``CD4``, ``covid-19``) and
      decimal numbers (``6,5``) whole, unstemmed; off, they are split on digits/punctuation.
    - ``keep_acronyms``: leave all-capital words of 2-6 letters (``AVK``, ``AINS``) unstemmed, and keep a
      lone capital letter as a term (``vitamine D``, ``hépatite C``, ``lymphocytes T``: the lowercase
      ``d``, ``c``, ``t`` are the stopwords of ``d'``, ``c'``, ``t'``; not ``A``, mostly ``à`` written
      without its accent, nor ``Y``), except in
      a text written all in capitals that holds a word longer than any acronym (7+ letters: a
      heading, a query typed with caps lock), whose words are read as lowercase ones
      (``LE PATIENT EST SOUS AVK`` -> ``patient``, ``sous``, ``avk``); a shorter query in capitals
      (``ANÉMIE``) or an acronym typed in lowercase is matched through :meth:`FrenchMedicalAnalyzer.other_reading`
      (on by default: +0.0052 macro BM25 NDCG@10 on the suite's val part, pilot 100 x 300, cases
      -0.003 (patients' initials); +0.0002 at 300 x 3,000; ``benchmarks/analyzer_ablation.py``). No other flip
      gained more than +0.0015 (accent folding off, with accented queries; it loses 0.020 with
      queries typed without accents; hyphenated compounds whole: -0.0010 / +0.0005), and turning
      stemming or stopwords off costs more.
    - ``split_units``: read a whole number glued to a unit of :data:`UNITS` as the number and the unit
      (``1000mg`` -> ``1000``, ``mg``, as ``1000 mg``; a range ``5-10mg`` -> ``5``, ``10``, ``mg``); off,
      ``1000mg`` is one term. A unit has its own term (:func:`unit_term`: unstemmed, ``µg`` =
      ``μg`` = ``ug`` = ``mcg``), kept even for the stopwords ``l`` (litre) and ``j`` (jour) when
      they follow a number (``5 L``, ``1,5L``, ``3 j``) or sit in a ratio of units (``mg/l``,
      ``mg/kg/j``), so ``mg/l`` is not ``mg/j``; a lone lowercase ``l`` elsewhere (``l'``, ``2020 l'``,
      ``mg / l``) is still a stopword (a capital ``L`` is a letter's term: ``keep_acronyms``). Off, units are words (``5 ms`` -> ``m``, ``mg/l`` -> ``mg``). +0.0006 / +0.0003
      macro on the val part (100 x 300 / 300 x 3,000; cases +0.0016, the other domains within 0.0008).
    - ``unit_words``: with ``split_units``, the units of time have the terms of the words they
      abbreviate (:data:`UNIT_WORDS`): ``3 j``, ``3j`` and ``3 jours``; ``g/j``, ``g/jour`` and ``g par
      jour``; ``24 h`` and ``24 heures``; ``10 min`` and ``10 minutes`` meet (leaflets mostly write
      ``par jour``, case reports as often ``/j``).
    - ``join_thousands``: read a number written with spaced thousands (``10 000``, ``100 000 UI``,
      ``2 500,5``; a space, a no-break, a narrow no-break or a thin space between groups of three digits) as one
      number, ``10000``, as it is also written; off, each group is a term (``10``, ``000``: a query
      ``10000`` missed the passages writing ``10 000``). Only with ``keep_alphanumeric``. A table
      flattened to text with numbers separated by spaces is read the same way where a group of three
      digits follows (``10 - 20 200 - 400`` -> ``20200``), and so are spaced phone numbers
      (``0 800 840 800``): one rare term instead of common ones.
    - ``split_hyphens``: index the parts of a hyphenated word without digits
      (``anti-inflammatoire`` -> ``anti``, ``inflammatoir``) rather than the compound, and a
      hyphenated token holding a digit as the whole token and its parts (``COVID-19`` -> ``covid-19``,
      ``covid``, ``19``; ``IL-6`` -> ``il-6``, ``il``, ``6``), so ``covid``, ``covid 19`` and ``IL 6``
      find it; off, such a token is one term.
    - ``extra_stopwords``: more words to drop (compared lowercased, before stemming; ``CHU`` too).
    - ``typo_tolerance`` (query side: an index and its signature do not depend on it): a query term
      that no indexed document holds, of 5 letters or more and without digits, is read as the held
      term one edit away that most documents hold (``amoxiciline`` -> ``amoxicilline``;
      :meth:`medrag.lexical.bm25.BM25Index.query_terms`). A term some document holds is never
      changed, nor an acronym typed in capitals, a number or a code.
    """

    stem: bool = True
    fold_accents: bool = True
    split_elisions: bool = True
    stopwords: bool = True
    keep_alphanumeric: bool = True
    keep_acronyms: bool = True
    split_hyphens: bool = True
    fold_before_stem: bool = True
    split_units: bool = True
    join_thousands: bool = True
    unit_words: bool = True
    extra_stopwords: tuple[str, ...] = field(default_factory=tuple)
    typo_tolerance: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):  # "false" is a true value: the option stayed on in silence
            if f.name != "extra_stopwords" and not isinstance(getattr(self, f.name), bool):
                raise InvalidInputError(f"AnalyzerOptions.{f.name} must be True or False, got {getattr(self, f.name)!r}")
        if isinstance(self.extra_stopwords, str) or not all(isinstance(w, str) for w in self.extra_stopwords):
            raise InvalidInputError("AnalyzerOptions.extra_stopwords must be a tuple of words, e.g. ('patient',)")
        object.__setattr__(self, "extra_stopwords", tuple(sorted({w.lower() for w in self.extra_stopwords})))


def unit_term(unit: str) -> str:
    """The index term of a unit of :data:`UNITS`: lowercased, micro written ``u`` (``µg``, ``μg``,
    ``ug`` and ``mcg`` -> ``ug``), never stemmed nor dropped as a stopword (``mg/l`` is not ``mg/j``).

    >>> [unit_term(u) for u in ("mg", "µg", "μmol", "mcg", "L")]
    ['mg', 'ug', 'umol', 'ug', 'l']
    """
    unit = unit.lower().replace("\u00b5", "u").replace("\u03bc", "u")
    return "ug" if unit == "mcg" else unit


def fold_accents(text: str) -> str:
    """``text`` without diacritics (NFKD, combining marks dropped; ``œ`` -> ``oe``, ``æ`` -> ``ae``).

    >>> fold_accents("œdème hépatique à Besançon")
    'oedeme hepatique a Besancon'
    """
    if text.isascii():
        return text
    text = text.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


class FrenchMedicalAnalyzer:
    """Turns French medical text into BM25 terms (see the module docstring for the choices).

    The analyzer caches the terms of every distinct surface token it has seen, so analysing
    a large corpus costs about one dict lookup per token after the first few thousand texts.

    >>> analyzer = FrenchMedicalAnalyzer(AnalyzerOptions(keep_acronyms=False))
    >>> analyzer("Les AINS et l’INR."), FrenchMedicalAnalyzer()("Les AINS et l’INR.")
    (['ain', 'inr'], ['ains', 'inr'])
    """

    def __init__(self, options: AnalyzerOptions | None = None) -> None:
        if options is not None and not isinstance(options, AnalyzerOptions):
            raise InvalidInputError(f"options must be an AnalyzerOptions, got {type(options).__name__}")
        self.options = options or AnalyzerOptions()
        # One alternation, scanned once per text: the regex engine is the cost of analysis, so
        # elisions and hyphens stay inside the token and are split in the (cached) per-token step.
        if self.options.keep_alphanumeric:
            self._pattern = re.compile(_TOKEN if self.options.join_thousands else _TOKEN_SPACED_GROUPS)
        else:
            self._pattern = re.compile(f"[^\\W\\d_]+(?:[-{_APOSTROPHES}][^\\W\\d_]+)*|\\d+|{_SIGN}")
        stop = (FRENCH_STOPWORDS if self.options.stopwords else frozenset()) | frozenset(self.options.extra_stopwords)
        if self.options.fold_accents and self.options.fold_before_stem:
            stop |= {fold_accents(w) for w in stop}  # "ete", "meme", "etait" typed without accents
        self._stop = stop
        extra = frozenset(self.options.extra_stopwords)  # lowercased; "HÔPITAL" typed "HOPITAL" too
        self._extra = extra | {fold_accents(w) for w in extra} if self.options.fold_accents else extra
        self._cache: dict[str, tuple[str, ...]] = {}
        self._stemmer = None

    @cached_property
    def signature(self) -> str:
        """A stable fingerprint of the options, the analyzer version and the stemmer (16 hex digits)."""
        options = {k: v for k, v in asdict(self.options).items() if k not in QUERY_SIDE_OPTIONS}
        payload = {"version": ANALYZER_VERSION, "options": options, "stemmer": "snowball-french"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"FrenchMedicalAnalyzer({self.options!r})"

    def _stem(self, word: str) -> str:
        if self._stemmer is None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer("french")
        return self._stemmer.stemWord(word)

    def _word_terms(self, word: str) -> tuple[str, ...]:
        """The terms of one pure-letter word (no digits, no hyphen)."""
        opts = self.options
        if opts.extra_stopwords and word.isupper() and word.lower() in self._extra:
            return ()  # "CHU" with extra_stopwords=("chu",): the acronym reading came first
        if opts.keep_acronyms and word.isupper() and (2 <= len(word) <= 6 or (
                len(word) == 1 and fold_accents(word) not in _NOT_LETTER_NAMES)):
            term = word.lower()  # AINS, AVK; vitamine D, hépatite C, protéine S, lymphocytes T
            return (fold_accents(term) if opts.fold_accents else term,)
        lower = word.lower()
        if opts.split_units and lower in UNITS and lower not in self._stop:
            return self._unit(lower)  # "ms", "µg": a unit is not stemmed ("ms" -> "m")
        if opts.split_units and fold_accents(lower) in UNIT_NAMES:  # "microgrammes" is "µg" (version 10)
            return self._unit(UNIT_NAMES[fold_accents(lower)])
        if lower in self._stop or (opts.fold_accents and fold_accents(lower) in self._stop):
            return ()
        if opts.stem and opts.fold_accents and opts.fold_before_stem:
            return (self._stem(self._stem(fold_accents(lower))),)
        term = self._stem(lower) if opts.stem else lower
        return (fold_accents(term) if opts.fold_accents else term,)

    def _glued_unit(self, token: str) -> tuple[str, ...] | None:
        """The terms of a whole number glued to a unit (``500mg`` -> ``500``, ``mg``: the unit's
        terms as a word's, so ``500 mg`` gives the same), or None for any other token."""
        glued = _GLUED_UNIT.fullmatch(token)
        if glued is None:
            return None
        unit = glued.group(2).lower()
        if unit not in UNITS:
            unit = UNIT_NAMES.get(fold_accents(unit), "")  # "500microgrammes" (version 10)
            if not unit:
                return None
        return (glued.group(1), *self._unit(unit))

    def _part_terms(self, part: str) -> tuple[str, ...]:
        """The terms of one part of a slash-joined token (``mg/l``: a unit, even a stopword)."""
        if self.options.split_units and part.lower() in UNITS:
            return self._unit(part)
        return self._terms(part) if part else ()

    def _unit(self, unit: str) -> tuple[str, ...]:
        """The term of a unit of :data:`UNITS` (:func:`unit_term`; a unit of time as its word's with ``unit_words``)."""
        term = unit_term(unit)
        if self.options.unit_words and term in UNIT_WORDS:
            return self._word_terms(UNIT_WORDS[term])
        return (term,)

    def _terms(self, token: str) -> tuple[str, ...]:
        opts = self.options
        if opts.keep_alphanumeric and _ICD.fullmatch(token):  # "E11.9": the code as typed without its dot
            # ("E119", as it is also written) and its category ("E11": a query naming the category finds it)
            code = _APOSTROPHE_RE.split(token)[-1].lower()  # "l'E11.9": the elision dropped (review)
            return (code[:3] + code[4:], code[:3])
        if opts.join_thousands and any(c in token for c in _SPACES):
            token = _THOUSANDS_SPACE.sub("", token)  # "10 000" -> "10000" ("5 l": the unit's space stays)
        if _POWER.fullmatch(token):  # a power of ten (_POWER_OF_TEN): one term
            return (token,)
        if "/" in token:  # a ratio of units ("mg/l", "mg/kg/j") or words joined by a slash ("et/ou")
            return tuple(t for part in token.split("/") for t in self._part_terms(part))
        stopword_unit = _STOPWORD_UNIT_PARTS.fullmatch(token) if token[-1] in "lLjJ" else None
        if stopword_unit is not None:  # "5 l", "1,5L", "3 j": the unit's term even though it is a stopword
            number, unit = stopword_unit.groups()
            if len(number) + len(unit) < len(token) or _DECIMAL.fullmatch(number) or _POWER.fullmatch(number):
                # spaced, or after a decimal or a power of ten ("1,5L", "10^9l")
                return (*self._terms(number), *(self._unit(unit) if opts.split_units else self._terms(unit)))
        if _APOSTROPHE_RE.search(token):
            parts = _APOSTROPHE_RE.split(token)
            if opts.split_elisions:
                while len(parts) > 1 and parts[0].lower() in ELISIONS:
                    parts = parts[1:]
            return tuple(t for p in parts if p for t in self._terms(p))
        has_digit = any(c.isdigit() for c in token)
        if has_digit and opts.split_units:
            glued = self._glued_unit(token)
            if glued is not None:
                return glued
            if "-" in token:  # a range: "5-10mg", "1g-2g" (not "covid-19", "IL-6": a part is a word)
                pieces = [(p,) if p.isdigit() else self._glued_unit(p) for p in token.split("-")]
                if all(piece is not None for piece in pieces):
                    return tuple(t for piece in pieces for t in piece)
        if has_digit or token in ("%", "\u2030"):
            term = token.lower().replace(".", ",")
            zeros = _TRAILING_ZEROS.fullmatch(term) if opts.keep_alphanumeric else None
            if zeros:  # "5,0" is "5", "0,50" is "0,5" (version 10)
                term = zeros.group(1) + (zeros.group(2) or "")
            whole = (fold_accents(term) if opts.fold_accents else term,)
            if has_digit and opts.split_hyphens and "-" in token:  # "COVID-19": also covid, 19
                # (not "covid19" for its whole term, as "Covid19" is typed: it would read as a code, and a query
                # naming COVID-19 as a lookup of its holders, is_identifier_term)
                return whole + tuple(t for p in token.split("-") if p for t in self._terms(p))
            return whole
        if "-" in token:
            parts = [p for p in token.split("-") if p]
            if opts.split_hyphens:
                # not also the compound written as one word ("anti-coagulant" = "anticoagulant"): -0.0023 / -0.0019
                # macro BM25 NDCG@10 on the suite's val part (100 x 300 / 300 x 3,000; leaflets -0.007)
                return tuple(t for p in parts for t in self._word_terms(p))
            compound = "-".join(t for p in parts for t in self._word_terms(p))
            return (compound,) if compound else ()
        return self._word_terms(token)

    def other_reading(self, token: str) -> tuple[str, ...] | None:
        """The terms of a surface token read with its other case, or None when its case decides nothing.

        With ``keep_acronyms``, a word of 2-6 letters typed in capitals is an acronym (one unstemmed
        term: ``AINS`` -> ``ains``), and the same word in lowercase or with a capital initial a word
        (stemmed, or dropped as a stopword: ``ains`` -> ``ain``, ``Smecta`` -> ``smect``). So a query
        typed with caps lock (``ANÉMIE``, ``TSH ÉLEVÉE``), or an acronym or a product name typed in
        lowercase (``ains``, ``smecta``), gets terms the passages do not hold. The BM25 index reads
        such a query word both ways and keeps the reading its documents use more
        (:meth:`medrag.lexical.bm25.BM25Index.query_terms`). Only the query side reads a token
        twice: the terms of indexed text never depend on it, so this is not part of
        :attr:`signature`. An elided word (``L'ANÉMIE``) is read without its elision; hyphenated,
        other mixed-case and letters-and-digits tokens have no other reading.

        >>> analyzer = FrenchMedicalAnalyzer()
        >>> analyzer("ANÉMIE"), analyzer.other_reading("ANÉMIE"), analyzer.other_reading("L'ANÉMIE")
        (['anemie'], ('anem',), ('anem',))
        >>> analyzer("ains"), analyzer.other_reading("ains"), analyzer.other_reading("Smecta"), analyzer.other_reading("HbA")
        (['ain'], ('ains',), ('smecta',), None)
        """
        if not self.options.keep_acronyms:
            return None
        if _APOSTROPHE_RE.search(token):
            parts = [p for p in _APOSTROPHE_RE.split(token) if p]
            if self.options.split_elisions:
                while len(parts) > 1 and parts[0].lower() in ELISIONS:
                    parts = parts[1:]
            return self.other_reading(parts[0]) if len(parts) == 1 else None
        if not token.isalpha() or not 2 <= len(token) <= 6:
            return None
        if token.isupper():
            return self._word_terms(token.lower())
        return self._word_terms(token.upper()) if token.islower() or token.istitle() else None

    def tokens(self, text: str) -> list[str]:
        """The surface tokens of ``text`` (before elision split, stopwords and stemming), in order;
        :meth:`token_terms` turns each into its terms. Callers that map terms to ids (the BM25
        index) cache per token on top of these two steps."""
        return self._pattern.findall(self._read_as(text))

    def token_spans(self, text: str) -> tuple[str, list[tuple[str, int]]]:
        """``text`` as :meth:`tokens` reads it (NFC; lowercased when it is shouted prose) and its
        tokens, each with its start offset in that text: what a caller needs to look at a token's
        neighbours (``BM25Index.query_terms`` reads a lone letter of a caps-lock query)."""
        text = self._read_as(text)
        return text, [(m.group(), m.start()) for m in self._pattern.finditer(text)]

    def _read_as(self, text: str) -> str:
        if not isinstance(text, str):
            raise InvalidInputError(f"the analyzer takes a str, got {type(text).__name__}")
        greek = False
        if not text.isascii():
            if not unicodedata.is_normalized("NFC", text):
                text = unicodedata.normalize("NFC", text)  # decomposed accents (macOS, PDF extraction) split words
            if _SPECIAL.search(text):  # one scan; most texts hold none of them
                text, greek = _UNICODE_HYPHENS.sub("-", _INVISIBLE.sub("", text)), True
        if self.options.keep_alphanumeric and (not text.isascii() or "^" in text or "*" in text):
            text = _clinical_numbers(text)  # 38°5, 10⁹, 10^9, 10*9
        if self.options.keep_acronyms and text.isupper() and _LONGER_THAN_ACRONYM.search(text):
            text = text.lower()  # "LE PATIENT EST SOUS AVK": stopwords dropped, words stemmed
        if greek:  # after the capitals test: the names are written in lowercase ("Β-BLOQUANTS" stays shouted)
            text = spell_greek(text)
        return text

    def token_terms(self, token: str) -> tuple[str, ...]:
        """The terms of one surface token from :meth:`tokens` (cached)."""
        terms = self._cache.get(token)
        if terms is None:
            terms = self._terms(token)
            if len(self._cache) < TOKEN_CACHE_LIMIT:
                self._cache[token] = terms
        return terms

    def __call__(self, text: str) -> list[str]:
        """The terms of ``text``, in order (``[]`` for a text made only of stopwords)."""
        cache = self._cache
        out: list[str] = []
        for token in self.tokens(text):
            terms = cache.get(token)
            if terms is None:
                terms = self.token_terms(token)
            out.extend(terms)
        return out

    def analyze_many(self, texts: Iterable[str]) -> list[list[str]]:
        """``[self(t) for t in texts]``."""
        return [self(t) for t in texts]
