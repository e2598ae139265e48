"""PDF files in `medrag index` folders (medrag.pdf): the text layer, reflowed; damaged, encrypted,
scanned PDFs and a missing pypdf named."""

from __future__ import annotations

import io
import logging

import chromadb
import pytest

import medrag.pdf
import medrag.sources
from medrag import MatryoshkaChroma
from medrag.errors import DataError, InvalidInputError
from medrag.indexing import index_corpus, iter_documents
from medrag.pdf import pdf_pages, pdf_text, reflow, strip_running_lines
from tests.medrag.test_store import FakeMatryoshkaEmbeddings

pypdf = pytest.importorskip("pypdf")

PROTOCOL = [["Protocole : anémie ferriprive de l'adulte.", "La ferritine basse signe une carence mar-",
             "tiale ; un anti-", "inflammatoire est évité.", "1. Fer oral", "2. Contrôle de l'hémo-",
             "globine à 4 semaines (hémoglobine cible > 12 g/dl)."],
            ["Page deux : surveillance."]]


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal PDF: one Helvetica line per item of each page, WinAnsi-encoded (accents kept)."""
    objects: list[bytes] = [b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    for lines in pages:
        ops = [b"BT /F1 11 Tf 72 760 Td 14 TL"]
        for line in lines:
            text = line.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
            ops.append(b"(" + text + b") Tj T*")
        stream = b"\n".join([*ops, b"ET"])
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    pages_id = 1 + 2 * len(pages) + 1
    page_ids = []
    for i in range(len(pages)):
        objects.append(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >> >> "
                       b"/Contents %d 0 R >>" % (pages_id, 2 + i))
        page_ids.append(len(objects))
    objects.append(b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids) + b"] /Count %d >>"
                   % len(page_ids))
    objects.append(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, len(objects), xref)
    return bytes(out)


def test_the_text_layer_is_reflowed_into_sentences(tmp_path) -> None:
    (tmp_path / "p.pdf").write_bytes(make_pdf(PROTOCOL))
    text = pdf_text(tmp_path / "p.pdf")
    assert text == ("Protocole : anémie ferriprive de l'adulte.\n"
                    "La ferritine basse signe une carence martiale ; un anti-inflammatoire est évité.\n"
                    "1. Fer oral\n2. Contrôle de l'hémoglobine à 4 semaines (hémoglobine cible > 12 g/dl).\f"
                    "Page deux : surveillance.")  # a form feed between pages: a page break to medrag index
    assert pdf_pages(tmp_path / "p.pdf") == text.split("\f")


def test_reflow_keeps_headings_items_and_paragraphs() -> None:
    assert reflow("Posologie\nLe patient prend\n2 comprimés par jour.") == "Posologie\nLe patient prend 2 comprimés par jour."
    assert reflow("Effets :\n- nausées\n• céphalées\n3) vertiges") == "Effets :\n- nausées\n• céphalées\n3) vertiges"
    assert reflow("Un paragraphe\n\nun autre") == "Un paragraphe\n\nun autre"
    # the hyphenated form written elsewhere is kept; a capital after the cut is a name's compound
    assert reflow("le porte-greffe et le porte-\ngreffe") == "le porte-greffe et le porte-greffe"
    assert reflow("le Jean-\nPierre") == "le Jean-Pierre" and reflow("la COVID-\n19") == "la COVID-19"
    # review: syllables that are also prefixes rejoin; lettered and roman items, a decimal at a line's
    # start, Windows line ends; a short line of its own over a paragraph is a heading
    assert reflow("La patiente pré-\nsente une sur-\nveillance d'une mi-\nnute.") == \
        "La patiente présente une surveillance d'une minute."
    assert reflow("Traitement :\na) fer oral\nb) fer injectable\ni. fièvre\nii. toux") == \
        "Traitement :\na) fer oral\nb) fer injectable\ni. fièvre\nii. toux"
    assert reflow("La dose est de\r\n1.5 mg par kg et de 5-\r\n10 mg.") == "La dose est de 1.5 mg par kg et de 5-10 mg."
    page = ("Posologie\nLa dose habituelle chez l'adulte est de un gramme trois fois par jour, sans dépasser\n"
            "quatre grammes par jour, et la dose de l'enfant dépend de son poids et de son âge.\n"
            "Mode d'administration\nvoie orale, avec un grand verre d'eau, de préférence au cours des repas\n"
            "pour limiter les troubles digestifs.")
    assert reflow(page).split("\n")[2:] == ["Mode d'administration", "voie orale, avec un grand verre d'eau, de "
                                             "préférence au cours des repas pour limiter les troubles digestifs."]
    assert reflow("POSOLOGIE\n500 mg deux fois par jour.") == "POSOLOGIE\n500 mg deux fois par jour."


def test_damaged_encrypted_and_scanned_pdfs(tmp_path) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\nnot really")
    with pytest.raises(DataError, match="bad.pdf: cannot read it as a PDF"):
        pdf_text(tmp_path / "bad.pdf")
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(PROTOCOL))))
    writer.encrypt(user_password="secret", owner_password="owner")
    with open(tmp_path / "locked.pdf", "wb") as f:
        writer.write(f)
    with pytest.raises(DataError, match="locked.pdf: the PDF is encrypted with a password") as locked:
        pdf_text(tmp_path / "locked.pdf")
    assert locked.value.cause == "password"  # medrag index warns one cause at a time
    # a broken trailer made pypdf raise AttributeError, which crashed medrag index (review)
    (tmp_path / "trailer.pdf").write_bytes(make_pdf(PROTOCOL).replace(b"\ntrailer\n", b"\ntrailer1"))
    with pytest.raises(DataError, match="trailer.pdf: cannot read it as a PDF"):
        pdf_text(tmp_path / "trailer.pdf")
    (tmp_path / "scan.pdf").write_bytes(make_pdf([[]]))
    assert pdf_text(tmp_path / "scan.pdf") == ""


def test_a_folder_indexes_its_pdfs_beside_its_text_files(tmp_path, caplog) -> None:
    folder = tmp_path / "protocoles"
    folder.mkdir()
    (folder / "anemie.pdf").write_bytes(make_pdf(PROTOCOL))
    (folder / "notes.txt").write_text("La TSH explore la thyroïde.")
    (folder / "scan.pdf").write_bytes(make_pdf([[]]))
    (folder / "abime.pdf").write_bytes(b"%PDF-1.4\nnot really")
    skipped: list[str] = []
    with caplog.at_level(logging.WARNING):
        docs = {key: text for key, text, _ in iter_documents(folder, skipped=skipped)}
    assert set(docs) == {"anemie.pdf", "notes.txt", "scan.pdf"} and "carence martiale" in docs["anemie.pdf"]
    assert docs["scan.pdf"] == "" and skipped == ["abime.pdf"]  # prune keeps a damaged file's stored chunks
    assert "1 .pdf file(s) that cannot be read skipped (damaged or truncated?) (e.g. abime.pdf (cannot read it as a PDF" \
        in caplog.text
    assert "1 .pdf file(s) without a text layer (scanned pages?): no text indexed (e.g. scan.pdf): OCR them first" \
        in caplog.text
    store = MatryoshkaChroma("protocoles", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    (folder / "vide.txt").write_text("  \n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        report = index_corpus(folder, store, chunk_words=20, show_progress=False)
    assert report.added >= 2 and any(d.metadata["source"] == "anemie.pdf"
                                      for d in store.similarity_search("ferritine carence martiale", k=4))
    # the scanned PDF is named once, with its advice: it was also counted in "empty (no text)" (user tryout)
    assert report.empty == 2 and caplog.text.count("scan.pdf") == 1
    assert "1 of 4 document(s) are empty (no text) and were not indexed; what was stored for them earlier is kept " \
        "(e.g. vide.txt)" in caplog.text


def test_without_pypdf_the_pdfs_are_named_with_the_install_command(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(medrag.sources, "pdf_available", lambda: False)
    monkeypatch.setattr(medrag.pdf, "pdf_available", lambda: False)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(make_pdf(PROTOCOL))
    with pytest.raises(DataError, match=r"its 1 \.pdf file\(s\) need pypdf: pip install 'medrag\[pdf\]'"):
        list(iter_documents(folder))
    (folder / "b.txt").write_text("Du texte.")
    skipped: list[str] = []
    with caplog.at_level(logging.WARNING):
        assert [key for key, _, _ in iter_documents(folder, skipped=skipped)] == ["b.txt"]
    assert "1 .pdf file(s) skipped (e.g. a.pdf): reading them needs pypdf" in caplog.text
    assert skipped == ["a.pdf"]  # not read is not removed: --prune deleted their chunks (review)
    with pytest.raises(DataError, match="reading PDF files needs pypdf"):
        pdf_text(folder / "a.pdf")


def test_a_single_document_file_points_at_its_folder(tmp_path, capsys) -> None:
    from medrag.cli import main

    (tmp_path / "a.pdf").write_bytes(make_pdf(PROTOCOL))
    assert main(["index", str(tmp_path / "a.pdf"), "--persist-dir", str(tmp_path / "db")]) == 1
    assert "a .pdf file is one document of a folder: index the folder holding it" in capsys.readouterr().err


def test_a_folder_whose_pdfs_are_all_unreadable_says_why(tmp_path) -> None:
    """It said "no document found; nothing was indexed", naming neither the files nor why (review)."""
    folder = tmp_path / "abimes"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"%PDF-1.4\nnot really")
    (folder / "b.pdf").write_bytes(b"%PDF-1.4\nnot either")
    with pytest.raises(DataError, match=r"none of its 2 file\(s\) could be read: a.pdf \(cannot read it as a PDF"):
        list(iter_documents(folder))


HEADER = "CHU de Nantes - Protocole PHA-012 - version 3 - page {}/3"
FOOTER = "Ne pas diffuser hors CHU"
PHA012 = [[HEADER.format(1), "Antibiothérapie probabiliste.", "La dose de charge est de 50 mg/kg en une injection",
           "quotidienne pendant les", FOOTER],
          [HEADER.format(2), "premiers jours de traitement. Le risque d'hypo-", "glycémie impose une surveillance.",
           "Un anti-", "coagulant est poursuivi et la néphro-", FOOTER],
          [HEADER.format(3), "toxicité impose un dosage. Vancomycine : cible résiduelle 15 à 20 mg/L.", FOOTER]]


def test_running_headers_and_footers_are_dropped_and_pages_flow(tmp_path) -> None:
    """A protocol's header and footer on every page were stored inside the chunks: in the middle of a
    sentence going on to the next page, and naming page 3 above a dose printed on page 2 (user
    tryout). The header stays once, above page 1's text; a word cut at a page's end is rejoined."""
    (tmp_path / "p.pdf").write_bytes(make_pdf(PHA012))
    pages = pdf_pages(tmp_path / "p.pdf")
    assert pages == [HEADER.format(1) + "\nAntibiothérapie probabiliste.\nLa dose de charge est de 50 mg/kg en une "
                     "injection quotidienne pendant les",
                     "premiers jours de traitement. Le risque d'hypoglycémie impose une surveillance.\nUn anticoagulant "
                     "est poursuivi et la néphrotoxicité",
                     "impose un dosage. Vancomycine : cible résiduelle 15 à 20 mg/L.\n" + FOOTER]  # moved, once
    assert pdf_text(tmp_path / "p.pdf") == "\f".join(pages)
    # lines repeated in the middle of pages, a header on under half of the pages, a single page: kept
    middle = ["\n".join([f"Ligne {c}{i}." for i in range(3)] + ["Posologie"] + [f"Fin {c}{i}." for i in range(3)])
              for c in "ab"]
    assert strip_running_lines(middle) == middle  # "Posologie" in the middle of both pages
    assert strip_running_lines(["En-tête\nA.", "B.\nC.\nD.\nE.\nF.\nG.\nH.", "I.", "J."]) == \
        ["En-tête\nA.", "B.\nC.\nD.\nE.\nF.\nG.\nH.", "I.", "J."]
    assert strip_running_lines(["Page 1\nun.", "Page 2\ndeux.", "Page 3\ntrois."]) == ["un.", "deux.", "trois."]
    assert strip_running_lines(["un.\n- 1 -", "deux.\n- 2 -"]) == ["un.", "deux."]  # page numbers alone: footers
    assert strip_running_lines(["Seule page\nSeule page"]) == ["Seule page\nSeule page"]
    with pytest.raises(InvalidInputError, match="a list of the pages' texts"):
        strip_running_lines("une page")


def test_a_word_cut_after_a_prefix_is_rejoined_as_medical_french_writes_it() -> None:
    """``hypo-`` / ``glycémie`` stayed ``hypo-glycémie``, which no query for hypoglycémie matched
    (user tryout): the prefixes medical French joins are rejoined unless two vowels would meet."""
    for cut, read in (("hypo-\nglycémie", "hypoglycémie"), ("hyper-\nkaliémie", "hyperkaliémie"),
                      ("intra-\nveineuse", "intraveineuse"), ("anti-\ncoagulant", "anticoagulant"),
                      ("hypo-\nalbuminémie", "hypoalbuminémie"), ("anti-\némétique", "antiémétique"),
                      ("anti-\ninflammatoire", "anti-inflammatoire"), ("auto-\nimmune", "auto-immune"),
                      ("intra-\nutérin", "intra-utérin"), ("micro-\norganisme", "micro-organisme"),
                      ("contre-\nindication", "contre-indication"), ("sous-\ncutanée", "sous-cutanée"),
                      ("anti-\nTNF", "anti-TNF"), ("post-\nopératoire", "post-opératoire")):
        assert reflow(f"un risque {cut} connu") == f"un risque {read} connu", cut
    # a function word's compounds, and two words the document writes on their own (re-check of the fixes)
    for cut, read in (("au-\ndelà", "au-delà"), ("ci-\ndessous", "ci-dessous"), ("c'est-à-\ndire", "c'est-à-dire"),
                      ("peut-\nêtre", "peut-être")):
        assert reflow(f"un risque {cut} connu") == f"un risque {read} connu", cut
    assert reflow("les bétalactamines temps-\ndépendantes ; le temps de perfusion ; dépendantes de la dose") == \
        "les bétalactamines temps-dépendantes ; le temps de perfusion ; dépendantes de la dose"
    # the document's other pages count: the word written whole there, or hyphenated
    assert reflow("un suivi post-\nopératoire", document="le suivi postopératoire") == "un suivi postopératoire"
    assert reflow("un anti-\ncoagulant", document="un anti-coagulant oral") == "un anti-coagulant"


def test_pdf_chunks_name_their_pages_and_unread_pdfs_their_cause(tmp_path, caplog) -> None:
    """A PDF's chunks had no page (a filter on page matched nothing), a scanned page among text pages
    was left out in silence, and one warning gave one cause and one advice for encrypted, AES and
    damaged files, and a web page saved as .pdf was "cannot read it as a PDF" (user tryout)."""
    folder = tmp_path / "protocoles"
    folder.mkdir()
    (folder / "pha012.pdf").write_bytes(make_pdf(PHA012))
    (folder / "scan.pdf").write_bytes(make_pdf([["Page un avec du texte."], [], ["Page trois."]]))
    (folder / "web.pdf").write_bytes(b"<!DOCTYPE html><html><body>Protocole</body></html>")
    (folder / "abime.pdf").write_bytes(b"%PDF-1.4\nnot really")
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(PROTOCOL))))
    writer.encrypt(user_password="secret", owner_password="owner")
    with open(folder / "locked.pdf", "wb") as f:
        writer.write(f)
    store = MatryoshkaChroma("protocoles", FakeMatryoshkaEmbeddings(), client=chromadb.EphemeralClient())
    with caplog.at_level(logging.WARNING):
        report = index_corpus(folder, store, chunk_words=12, overlap=0, show_progress=False)
    assert report.not_read == 3 and report.scanned_pages == 1
    got = store.get(where={"source": "pha012.pdf"})
    pages = {m["chunk"]: (m["page"], m["page_end"], text) for text, m in zip(got["documents"], got["metadatas"])}
    assert [pages[c][:2] for c in sorted(pages)] == [(1, 1), (1, 2), (2, 3), (3, 3)]
    assert pages[3][2] == "Vancomycine : cible résiduelle 15 à 20 mg/L. " + FOOTER and "page 3/3" not in pages[2][2]
    assert {m["page"] for m in store.get(where={"page": 3})["metadatas"]} == {3}  # filterable
    assert " ".join(got["documents"]).count("Ne pas diffuser") == 1  # once, at the end
    text = caplog.text
    assert "1 .pdf file(s) with pages without a text layer (scanned pages?): those pages are not indexed " \
           "(e.g. scan.pdf (page 2 of 3)): OCR them first" in text
    assert "1 file(s) named .pdf that are not PDFs skipped (e.g. web.pdf (not a PDF: a web page (HTML)" in text
    assert "1 .pdf file(s) encrypted with a password skipped (e.g. locked.pdf" in text and "--password=" in text
    assert "1 .pdf file(s) that cannot be read skipped (damaged or truncated?) (e.g. abime.pdf" in text


def test_a_pdf_encrypted_with_aes_and_no_user_password_is_read(tmp_path) -> None:
    """Protected hospital PDFs often have an owner password only (readable by anyone) with AES: they
    need the cryptography package, which the pdf extra now brings (pypdf[crypto]: user tryout)."""
    pytest.importorskip("cryptography")
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(PROTOCOL))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    with open(tmp_path / "aes.pdf", "wb") as f:
        writer.write(f)
    assert pdf_pages(tmp_path / "aes.pdf") == pdf_pages_of(PROTOCOL, tmp_path)


def pdf_pages_of(pages: list[list[str]], folder) -> list[str]:
    (folder / "plain.pdf").write_bytes(make_pdf(pages))
    return pdf_pages(folder / "plain.pdf")


def test_the_values_filled_into_a_forms_text_fields_are_read(tmp_path) -> None:
    """A filled request form's drug and dose are in its fields, not in its text layer: they were not
    indexed (user tryout). Each text field's value is a line of its page; other widgets are not."""
    from pypdf.generic import ArrayObject, DictionaryObject, FloatObject, NameObject, TextStringObject

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf([["Demande de dérogation.",
                                                                             "Molécule demandée :"], ["Suite."]]))))

    def widget(kind: str, name: str, value: str):
        return writer._add_object(DictionaryObject({
            NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Widget"),
            NameObject("/FT"): NameObject(kind), NameObject("/T"): TextStringObject(name),
            NameObject("/V"): TextStringObject(value) if kind == "/Tx" else NameObject(value),
            NameObject("/Rect"): ArrayObject([FloatObject(x) for x in (100, 600, 300, 620)])}))

    writer.pages[0][NameObject("/Annots")] = ArrayObject([
        widget("/Tx", "molecule", "linézolide  600 mg x 2/j"), widget("/Tx", "justif", "SARM résistant"),
        widget("/Btn", "urgent", "/Yes"), widget("/Tx", "vide", "  ")])
    with open(tmp_path / "form.pdf", "wb") as f:
        writer.write(f)
    assert pdf_pages(tmp_path / "form.pdf") == ["Demande de dérogation.\nMolécule demandée :\n\n"
                                                "- molecule : linézolide 600 mg x 2/j\n- justif : SARM résistant",
                                                "Suite."]


def test_table_rows_headings_and_lab_values_repeated_on_two_pages_are_text_not_headers(tmp_path) -> None:
    """Numbers were compared as '#' and two pages were enough: a dose table's row, section headings
    and a whole page of lab values were dropped as running lines (review)."""
    cases = {
        "doses": [["Posologie pédiatrique du paracétamol.", "La dose dépend du poids :",
                   "Enfant de 10 kg : 150 mg toutes les 6 h"],
                  ["Enfant de 20 kg : 300 mg toutes les 6 h", "Ne pas dépasser 4 prises par jour."]],
        "headings": [["Amoxicilline", "Posologie :", "1 g trois fois par jour.", "Contre-indications :", "allergie."],
                     ["Vancomycine", "Posologie :", "15 mg/kg toutes les 12 h.", "Contre-indications :", "aucune."],
                     ["Notes générales.", "Une ligne.", "Une autre.", "Encore une.", "Fin."]],
        "labs": [["Bilan du 3 mars.", "Créatinine", "Potassium 6,2"], ["Bilan du 4 mars.", "Créatinine", "Potassium 3,9"]],
    }
    for name, pages in cases.items():
        (tmp_path / f"{name}.pdf").write_bytes(make_pdf(pages))
        read = pdf_pages(tmp_path / f"{name}.pdf")
        for page, lines in zip(read, pages):
            assert all(line in page for line in lines if not line.endswith("-")), (name, read)


def test_a_header_first_printed_on_page_two_and_a_page_of_headers_alone(tmp_path) -> None:
    """A header missing from page 1 (its own layout) was kept on page 2, inside the sentence going on
    over the break ("est de CHU de Nantes ... page 2/3 30 mg/kg"); a page holding only the header and
    the footer kept the footer, or was warned about as scanned (review)."""
    head = "CHU de Nantes - Protocole PHA-012 - page {}/3"
    (tmp_path / "p2.pdf").write_bytes(make_pdf([["PROTOCOLE PHA-012", "La dose de charge est de"],
                                                [head.format(2), "30 mg/kg en une injection."],
                                                [head.format(3), "Cible résiduelle 15 à 20 mg/L."]]))
    # kept once where first printed, after the sentence going on from page 1
    assert pdf_text(tmp_path / "p2.pdf") == ("PROTOCOLE PHA-012\nLa dose de charge est de\f30 mg/kg en une injection."
                                             "\n" + head.format(2) + "\fCible résiduelle 15 à 20 mg/L.")
    (tmp_path / "figure.pdf").write_bytes(make_pdf([[head.format(1), "Texte un.", "Ne pas diffuser"],
                                                    [head.format(2), "Ne pas diffuser"],
                                                    [head.format(3), "Texte trois.", "Ne pas diffuser"]]))
    scanned: list[int] = []
    assert pdf_pages(tmp_path / "figure.pdf", scanned=scanned) == [head.format(1) + "\nTexte un.", "",
                                                                   "Texte trois.\nNe pas diffuser"]
    assert scanned == []  # emptied by the headers dropped, not a page without a text layer
    assert strip_running_lines(["Texte un.\n- 1 -", "- 2 -", "Texte trois.\n- 3 -"]) == ["Texte un.", "", "Texte trois."]
    (tmp_path / "scan.pdf").write_bytes(make_pdf([["Un."], [], ["Trois."]]))
    assert pdf_pages(tmp_path / "scan.pdf", scanned=scanned) == ["Un.", "", "Trois."] and scanned == [2]


def test_repeated_lines_are_kept_once_doses_alone_on_their_line_are_text(tmp_path) -> None:
    """Re-check of the fixes (user tryout): a dose alone on its line at the bottom of two pages was
    dropped as a page number; a dose reminder at the bottom of every page, an annex's title and a
    table's column headings opening the later pages were dropped everywhere; a 2-page protocol kept
    its footer inside the sentence going on over the break."""
    cases = {
        "max": ([["Dose maximale journalière en mg :", "4000"], ["Adulte de moins de 50 kg, en mg :", "3000"]],
                ["Dose maximale journalière en mg :\n4000", "Adulte de moins de 50 kg, en mg :\n3000"]),
        "rappel": ([[f"Texte {n}.", "Rappel : ne jamais dépasser 4 g/j de paracétamol."] for n in (1, 2, 3)],
                   ["Texte 1.", "Texte 2.", "Texte 3.\nRappel : ne jamais dépasser 4 g/j de paracétamol."]),
        "annexe": ([["Protocole.", "Le texte du protocole."], *[["ANNEXE 1 - SURVEILLANCE", f"Dosage {n}."]
                                                                 for n in (2, 3, 4)]],
                   ["Protocole.\nLe texte du protocole.", "ANNEXE 1 - SURVEILLANCE\nDosage 2.", "Dosage 3.",
                    "Dosage 4."]),
        "deux": ([["La dose est adaptée", "Ne pas diffuser hors CHU"], ["à la kaliémie.", "Ne pas diffuser hors CHU"]],
                 ["La dose est adaptée", "à la kaliémie.\nNe pas diffuser hors CHU"]),
    }
    for name, (pages, expected) in cases.items():
        (tmp_path / f"{name}.pdf").write_bytes(make_pdf(pages))
        assert pdf_pages(tmp_path / f"{name}.pdf") == expected, name
    assert pdf_text(tmp_path / "deux.pdf") == "La dose est adaptée\fà la kaliémie.\nNe pas diffuser hors CHU"


def test_a_footer_of_two_lines_keeps_its_order_and_a_header_of_four_lines_is_found(tmp_path) -> None:
    """A dose reminder wrapped over two lines was moved with its lines reversed ("et 3 g ... Rappel : ...
    4 g"), and a header of four lines (hospital, department, protocol, version) kept its fourth line
    on every page (citations tryout)."""
    header = ["CHU Sainte-Marie", "Pôle Pharmacie", "Protocole KAL-011 - Potassium IV", "Version 2 du 01/02/2024"]
    footer = ["Rappel : ne pas dépasser 4 g par 24 heures chez l'adulte,", "et 3 g en cas d'insuffisance hépatique."]
    pages = [[*header, f"Texte {n}.", *footer, f"Page {n}/3"] for n in (1, 2, 3)]
    (tmp_path / "p.pdf").write_bytes(make_pdf(pages))
    read = pdf_pages(tmp_path / "p.pdf")
    assert read[0].startswith("\n".join(header)) and read[1] == "Texte 2."
    assert read[2] == "Texte 3.\n" + " ".join(footer)  # once, in its order (reflow joins the two lines)


def test_cards_of_one_layout_lone_numbers_and_headers_kept_on_a_later_page(tmp_path) -> None:
    """Final review: pages of one layout (a drug's card per page) lost their own doses and
    contraindication, moved to the last card; a table's cell "2" and a list's "1." repeated on
    several pages were dropped as page numbers; a header kept on a later page split the sentence and
    the word going on from the page before ("néphro-Molécule", "la dose est de Annexe ...")."""
    common = ["Posologie", "Adulte : 1 g toutes les 8 heures.", "Surveillance : créatinine à J3.",
              "Allergie aux bêta-lactamines : contre-indiqué."]
    cards = [[name, *common] for name in ("AMOXICILLINE", "CEFTRIAXONE", "CEFOTAXIME")]
    cards.append(["VANCOMYCINE", "Posologie", "Adulte : 15 mg/kg toutes les 12 heures.", "Surveillance du taux."])
    assert strip_running_lines(["\n".join(card) for card in cards]) == ["\n".join(card) for card in cards]
    numbers = strip_running_lines([f"Tableau {n}\nComprimés\n2\nLigne {n}." for n in (1, 2, 3, 4)])
    assert all("\n2\n" in page for page in numbers)
    steps = strip_running_lines(["Intro.", "Étapes :\n1.\nPréparer la seringue.", "Étapes :\n1.\nRincer la voie."])
    assert steps[1:] == ["Étapes :\n1.\nPréparer la seringue.", "Étapes :\n1.\nRincer la voie."]
    table = ["Le risque principal est la néphro-", *(f"Molécule Dose Rythme\n{row}" for row in (
        "toxicité, surveillée par la créatinine.", "Vancomycine 15 mg/kg 12 h", "Gentamicine 5 mg/kg 24 h"))]
    (tmp_path / "table.pdf").write_bytes(make_pdf([page.split("\n") for page in table]))
    read = pdf_pages(tmp_path / "table.pdf")
    assert read[0] == "Le risque principal est la néphrotoxicité"  # the word first, then the kept headings
    assert read[1:] == [", surveillée par la créatinine.\nMolécule Dose Rythme", "Vancomycine 15 mg/kg 12 h",
                        "Gentamicine 5 mg/kg 24 h"]
    annex = strip_running_lines(["Chez l'adulte, la dose est de", *(f"Annexe : tableau des doses\nLigne {n}."
                                                                     for n in (1, 2, 3))])
    assert annex[1] == "Ligne 1.\nAnnexe : tableau des doses"  # not "la dose est de Annexe : ..."


def test_a_word_cut_twice_and_function_word_heads_are_rejoined(tmp_path) -> None:
    """Final review: a word cut the same way twice stayed hyphenated both times (its halves counted as
    words the document writes), and words starting with au-, ci-, vis- kept a false hyphen."""
    assert reflow("une carence mar-\ntiale ; la carence mar-\ntiale") == "une carence martiale ; la carence martiale"
    for cut, read in (("ci-\nprofloxacine", "ciprofloxacine"), ("au-\nriculaire", "auriculaire"),
                      ("vis-\ncosité", "viscosité"), ("ci-\ndessous", "ci-dessous"), ("au-\ndelà", "au-delà")):
        assert reflow(f"la {cut} est") == f"la {read} est", cut
    # a form feed inside a page's text is not one more page (every later citation would be a page off)
    (tmp_path / "ff.pdf").write_bytes(make_pdf([["Un.\fDeux."], ["Trois."]]))
    assert len(pdf_text(tmp_path / "ff.pdf").split("\f")) == 2
