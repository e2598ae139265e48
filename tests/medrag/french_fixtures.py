"""Small synthetic French medical files in the layout of ../shared/data (never the real data)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from medrag.qa.french_text import document_part

DRUGS = ["DOLIPRANE", "ZYRTEC", "SPASFON", "GAVISCON", "SMECTA", "TOPALGIC", "KARDEGIC", "LEVOTHYROX",
         "INEXIUM", "AUGMENTIN", "VENTOLINE", "XANAX", "DAFALGAN", "EFFERALGAN", "IMODIUM", "MOTILIUM"]
ORGANS = ["foie", "rein", "coeur", "poumon", "estomac", "peau", "thyroïde", "cerveau"]


def leaflet_text(product: str, i: int) -> str:
    name = product.split(",")[0]
    organ = ORGANS[i % len(ORGANS)]
    return (
        f"{product} Encadré Veuillez lire attentivement cette notice avant de prendre ce médicament car elle "
        "contient des informations importantes pour vous. · Gardez cette notice. Voir rubrique 4. "
        f"Que contient cette notice ? 1. Qu'est-ce que {name} et dans quels cas est-il utilisé ? "
        f"2. Quelles sont les informations à connaître avant de prendre {name} ? "
        f"1. QU’EST-CE QUE {name} ET DANS QUELS CAS EST-IL UTILISE ? "
        f"Ce médicament est indiqué dans le traitement des maladies du {organ} numéro {i}. Il agit sur le {organ} "
        "en quelques heures et soulage les symptômes de façon durable chez l'adulte. "
        f"2. QUELLES SONT LES INFORMATIONS A CONNAITRE AVANT DE PRENDRE {name} ? "
        f"Ne prenez jamais {name} : · si vous êtes allergique à la substance active numéro {i} ou à l’un des "
        "autres composants contenus dans ce médicament. Avertissements et précautions Adressez-vous à votre "
        f"médecin avant de prendre ce médicament si vous avez une maladie du {organ} ou des reins. "
        "Grossesse et allaitement Ce médicament est déconseillé pendant les trois premiers mois de la grossesse "
        f"et pendant l'allaitement, sauf avis contraire du médecin pour la molécule {i}. "
        "Conduite de véhicules et utilisation de machines Sans objet. "
        f"3. COMMENT PRENDRE {name} ? Prenez un comprimé {i % 3 + 1} fois par jour avec un verre d'eau, "
        "de préférence au cours des repas, pendant une durée de sept jours au maximum sans avis médical. "
        f"Si vous oubliez de prendre {name} Ne prenez pas de dose double pour compenser la dose que vous avez "
        "oublié de prendre ; continuez le traitement normalement le lendemain matin. "
        "4. QUELS SONT LES EFFETS INDESIRABLES EVENTUELS ? Comme tous les médicaments, ce médicament peut "
        f"provoquer des effets indésirables : douleurs du {organ}, nausées, maux de tête et éruptions sur la "
        "peau chez certaines personnes. Déclaration des effets secondaires Si vous ressentez un quelconque "
        "effet indésirable, parlez-en à votre médecin ou votre pharmacien, ou déclarez-le sur le site de l'ANSM. "
        f"5. COMMENT CONSERVER {name} ? Tenir ce médicament hors de la vue et de la portée des enfants. "
        "A conserver à une température ne dépassant pas 25°C, dans son emballage d'origine, à l'abri de la lumière. "
        "6. CONTENU DE L’EMBALLAGE ET AUTRES INFORMATIONS Ce que contient "
        f"{name} · La substance active est la molécule {i} à raison de 500 mg par comprimé et les autres "
        "composants sont l'amidon, le talc et le stéarate de magnésium. Titulaire de l’autorisation "
        "LABORATOIRE EXEMPLE 1 rue de Paris 75001 PARIS."
    )


def case_text(i: int) -> str:
    organ = ORGANS[i % len(ORGANS)]
    one = (f"Un homme âgé de {20 + i} ans consulte pour une douleur du {organ} évoluant depuis {i + 2} jours. "
           f"L'examen trouve une sensibilité du {organ} et une fièvre à 39 °C. La biologie montre une "
           f"hyperleucocytose et une CRP élevée à {100 + i} mg/l. Le scanner confirme une collection de trois "
           "centimètres. Un drainage est réalisé avec une évolution favorable en une semaine sous antibiotiques.")
    if i % 5 == 0:
        two = (f"Une femme de {30 + i} ans est admise pour une toux chronique et un amaigrissement de six kilos. "
               "La radiographie montre une opacité apicale droite. La recherche de bacilles est positive et un "
               "traitement antituberculeux est débuté avec une bonne évolution clinique et radiologique à deux mois.")
        return f"Cas n° 1 {one} Cas n° 2 {two}"
    return one


def abstract_text(i: int) -> str:
    organ = ORGANS[i % len(ORGANS)]
    return (f" ÉVALUATION DU {organ.upper()} CHEZ LE SUJET ÂGÉ NUMÉRO {i}. Cette étude rétrospective a inclus "
            f"{100 + i} patients suivis pour une atteinte du {organ} entre 2010 et 2020. L'objectif était de "
            "décrire les facteurs de risque et l'évolution à un an. Les résultats montrent une mortalité de "
            f"{i % 20} % et un taux de réhospitalisation élevé. Une prise en charge précoce améliore le pronostic.")


def _ids(source: str, n: int, prefix: str) -> list[str]:
    """``n`` ids with at least two documents in each of train/val/test (the split is a hash)."""
    ids, per_part = [], {"train": 0, "val": 0, "test": 0}
    k = 0
    while len(ids) < n or min(per_part.values()) < 2:
        doc_id = f"{prefix}{k}"
        part = document_part(source, doc_id)
        if len(ids) < n or per_part[part] < 2:
            ids.append(doc_id)
            per_part[part] += 1
        k += 1
    return ids


def _write(path: Path, rows: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_french_text(folder: Path, n: int = 16) -> Path:
    """Write the three gzipped JSONL files (``n`` documents each, at least 2 per part) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, doc_id in enumerate(_ids("leaflets", n, "L")):
        product = f"{DRUGS[i % len(DRUGS)]} {100 * (i + 1)} mg, comprimé pelliculé"
        rows.append({"id": doc_id, "product": product, "text": leaflet_text(product, i), "licence": "CC BY-NC 4.0"})
    _write(folder / "drug_leaflets.jsonl.gz", rows)
    _write(folder / "clinical_cases_pamj.jsonl.gz",
           [{"id": d, "text": case_text(i), "licence": "CC BY 4.0"} for i, d in enumerate(_ids("cases", n, "C"))])
    _write(folder / "pubmed_abstracts_morfitt.jsonl.gz",
           [{"id": d, "split": "train", "text": abstract_text(i), "specialities": []}
            for i, d in enumerate(_ids("abstracts", n, "A"))])
    return folder


def write_frenchmedmcqa(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, offset in (("train", 0), ("dev", 100), ("test", 200)):
        records = [{"id": str(offset + i), "question": f"Quel organe est atteint dans la maladie {offset + i} ?",
                    "answers": {"a": f"Le {ORGANS[i % 8]} ({offset + i})", "b": "Aucun"}, "correct_answers": ["a"]}
                   for i in range(6)]
        (folder / f"{split}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return folder


def write_data_root(root: Path) -> Path:
    """``root/frenchmedmcqa`` and ``root/french-medical-text``, as ../shared/data."""
    write_french_text(root / "french-medical-text")
    write_frenchmedmcqa(root / "frenchmedmcqa")
    return root
