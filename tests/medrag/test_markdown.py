"""Markdown sections (medrag.markdown): headings as CommonMark reads them, nothing else."""

from __future__ import annotations

from medrag.markdown import heading_trail, markdown_sections


def test_atx_headings_make_a_trail_that_deeper_and_equal_levels_close() -> None:
    text = ("Préambule.\n# Doliprane 1000 mg\nIntro.\n## Posologie\nUn comprimé.\n### Enfants\nNon.\n"
            "## Effets indésirables ##\nRares.\n# Autre\nFin.")
    assert markdown_sections(text) == [
        ((), "Préambule."),
        (("Doliprane 1000 mg",), "Intro."),
        (("Doliprane 1000 mg", "Posologie"), "Un comprimé."),
        (("Doliprane 1000 mg", "Posologie", "Enfants"), "Non."),
        (("Doliprane 1000 mg", "Effets indésirables"), "Rares."),
        (("Autre",), "Fin."),
    ]


def test_what_is_not_a_heading_stays_in_the_body() -> None:
    """No space after '#', seven of them, '#' inside a fenced code block (a shell comment), a tag."""
    text = ("# Titre\n#hashtag\n####### sept\n```bash\n# pas un titre\n```\n~~~\n## non plus\n~~~\n"
            "    texte\nC'est la fin.")
    assert markdown_sections(text) == [
        ((), ""),
        (("Titre",), "#hashtag\n####### sept\n```bash\n# pas un titre\n```\n~~~\n## non plus\n~~~\n    texte\n"
                     "C'est la fin."),
    ]


def test_setext_headings_and_not_a_list_table_or_front_matter() -> None:
    text = ("---\ntitle: Protocole\n---\nIntro\n\nKaliémie\n========\nTexte.\nConduite *à tenir* :\n---\n"
            "- un item\n---\n| a | b |\n|---|---|\nFin.")
    sections = markdown_sections(text)
    assert sections[0] == ((), "---\ntitle: Protocole\n---\nIntro")
    assert sections[1] == (("Kaliémie",), "Texte.")
    assert sections[2] == (("Kaliémie", "Conduite à tenir"), "- un item\n---\n| a | b |\n|---|---|\nFin.")
    assert len(sections) == 3


def test_an_empty_heading_closes_the_trail_and_crlf_reads_as_lf() -> None:
    assert markdown_sections("# A\r\nx\r\n#\r\ny") == [((), ""), (("A",), "x"), ((), "y")]
    assert markdown_sections("sans titre") == [((), "sans titre")]
    assert heading_trail(("A", "B/C")) == "A > B/C"
