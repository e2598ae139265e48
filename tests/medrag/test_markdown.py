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
    text = ("---\ntitle: Protocole\n---\nIntro\n\nKaliémie\n========\nTexte.\n\nConduite *à tenir* :\n---\n"
            "- un item\n---\n| a | b |\n|---|---|\nFin.")
    sections = markdown_sections(text)
    # the front matter is text of the first section, and its title leads every trail
    assert sections[0] == (("Protocole",), "---\ntitle: Protocole\n---\nIntro")
    assert sections[1] == (("Protocole", "Kaliémie"), "Texte.")
    assert sections[2] == (("Protocole", "Kaliémie", "Conduite à tenir"), "- un item\n---\n| a | b |\n|---|---|\nFin.")
    assert len(sections) == 3


def test_an_empty_heading_closes_the_trail_and_crlf_reads_as_lf() -> None:
    assert markdown_sections("# A\r\nx\r\n#\r\ny") == [((), ""), (("A",), "x"), ((), "y")]
    assert markdown_sections("sans titre") == [((), "sans titre")]
    assert heading_trail(("A", "B/C")) == "A > B/C"


def test_a_setext_underline_needs_a_paragraph_line_above_it() -> None:
    """Review (against CommonMark, markdown-it-py): a closing fence, a pipe-less table row, a list item's
    continuation, indented code, HTML or a quote followed by ``---`` made a heading of that line."""
    assert markdown_sections("# A\n## B\n```\ncode\n```\n---\ntexte") == [
        ((), ""), (("A",), ""), (("A", "B"), "```\ncode\n```\n---\ntexte")]
    for above in ("a | b\n--|--\n1 | 2", "- item\n  suite de l'item", "    code indenté", "</div>", "> citation"):
        sections = markdown_sections(f"# A\n{above}\n---\ntexte")
        assert sections == [((), ""), (("A",), f"{above}\n---\ntexte".lstrip())], above
    # the whole paragraph is the heading (CommonMark; user tryout: a hard-wrapped title lost its first line)
    assert markdown_sections("# A\nUn paragraphe\nsur deux lignes\n---\ntexte")[2] == (
        ("A", "Un paragraphe sur deux lignes"), "texte")


def test_the_document_written_back_keeps_headings_front_matter_and_fences_apart_from_bodies() -> None:
    """A folder's .md file is reflowed section by section (review: reflowing the whole file first joined
    the front matter's lines and a Setext underline to the text)."""
    from medrag.markdown import parse_markdown
    from medrag.pdf import reflow

    text = ("---\ntitle: Doliprane\ndate: 2024-01-01\n---\nAntalgique de\npalier 1.\n\nPosologie\n=========\n"
            "un comprimé le matin,\nun le soir.\n~~~\nligne un\nligne deux\n~~~\n")
    doc = parse_markdown(text)
    assert doc.front_matter == "---\ntitle: Doliprane\ndate: 2024-01-01\n---"
    written = doc.text(reflow)
    assert written.splitlines() == ["---", "title: Doliprane", "date: 2024-01-01", "---", "Antalgique de palier 1.",
                                    "# Posologie", "un comprimé le matin, un le soir.", "", "~~~", "ligne un",
                                    "ligne deux", "~~~"]
    assert markdown_sections(written) == [
        (("Doliprane",), "---\ntitle: Doliprane\ndate: 2024-01-01\n---\nAntalgique de palier 1."),
        (("Doliprane", "Posologie"), "un comprimé le matin, un le soir.\n\n~~~\nligne un\nligne deux\n~~~")]


def test_code_and_html_blocks_hold_no_heading_and_are_written_back_as_they_are() -> None:
    """User tryout: "    # exemple de saisie" (indented code) and a "# Ancienne version" inside an HTML
    comment became level-1 headings, and the drug's name left every chunk's trail. The document written
    back keeps such blocks verbatim (reflowed, the indent went and the next parse read a heading)."""
    from medrag.markdown import parse_markdown
    from medrag.pdf import reflow

    text = ("# Midazolam\n\n    # exemple de saisie\n    dose = 0.05 mg/kg\n\n\t# tabulé\n\n<!--\n# Ancienne version\n"
            "Dose 2 mg.\n\n-->\n<pre>\n# sortie\n</pre>\n<div>\n# dans un div\n</div>\n\n## Posologie\nSédation\nvigile.")
    trails = [h for h, _ in markdown_sections(text)]
    assert trails == [(), ("Midazolam",), ("Midazolam", "Posologie")]
    written = parse_markdown(text).text(reflow)
    assert "    # exemple de saisie\n    dose = 0.05 mg/kg" in written and "<pre>\n# sortie\n</pre>" in written
    # an HTML comment is not shown: a superseded dose commented out is not indexed (user tryout)
    assert "Ancienne version" not in written and "Dose 2 mg" not in written and "-->" not in written
    assert [h for h, _ in markdown_sections(written)] == trails  # the second reading agrees
    assert markdown_sections(written)[-1] == (("Midazolam", "Posologie"), "Sédation vigile.")
    # an indented line inside a paragraph or a list item is no code: it continues them
    assert markdown_sections("# A\nUn texte\n    qui continue")[1] == (("A",), "Un texte\n    qui continue")


def test_a_comment_on_one_line_is_dropped_and_the_text_after_it_kept() -> None:
    assert markdown_sections("# A\n<!-- note -->\nTexte.\n<!--\n\nvieux\n-->\nSuite.") == [
        ((), ""), (("A",), "Texte.\nSuite.")]


def test_the_front_matter_title_leads_every_trail_unless_the_first_heading_repeats_it() -> None:
    """A static-site or wiki page keeps its title in its front matter and starts with its sections:
    the chunk under "## Posologie" named neither the drug nor the page."""
    page = "---\nlayout: fiche\ntitle: 'Doliprane 1000 mg : l''essentiel' # fiche\n---\n## Posologie\nUn comprimé.\n"
    assert markdown_sections(page) == [(("Doliprane 1000 mg : l'essentiel",), "---\nlayout: fiche\ntitle: "
                                        "'Doliprane 1000 mg : l''essentiel' # fiche\n---"),
                                       (("Doliprane 1000 mg : l'essentiel", "Posologie"), "Un comprimé.")]
    assert markdown_sections('---\nTitle: "Sepsis"\n---\n# sepsis\nTexte.')[1] == (("sepsis",), "Texte.")
    assert markdown_sections("---\ntitle: Kaliémie # note\n---\nTexte.") == [
        (("Kaliémie",), "---\ntitle: Kaliémie # note\n---\nTexte.")]
    for no_title in ("title:", "title: null", "title: ~", "subtitle: x", "meta:\n  title: imbriqué", "titles: [a, b]",
                     "title: [a, b]", "title: true", "pas: du: yaml: [", "- une liste"):
        assert markdown_sections(f"---\n{no_title}\n---\n## A\nx")[1][0] == ("A",), no_title
    # read as YAML reads it (review): a long title wrapped by yaml.safe_dump, escapes, a block scalar
    wrapped = "---\ntitle: Recommandations pour le traitement du diabète de type\n  2 chez la personne âgée\n---\n## A\nx"
    assert markdown_sections(wrapped)[1][0] == (
        "Recommandations pour le traitement du diabète de type 2 chez la personne âgée", "A")
    assert markdown_sections('---\ntitle: "L\\u00e9o"\n---\n## A\nx')[1][0] == ("Léo", "A")
    assert markdown_sections("---\ntitle: |\n  Deux\n  lignes\n---\n## A\nx")[1][0] == ("Deux lignes", "A")
    assert markdown_sections("title: pas de front matter\n## A\nx")[1][0] == ("A",)
