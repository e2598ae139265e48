"""The validation suite's tasks (medrag.qa.suite) on synthetic fixtures."""

from __future__ import annotations

import pytest

from medrag.errors import DataError
from medrag.qa import IRTask
from medrag.qa.suite import CHOICE_DOMAINS, DOMAINS, build_suite, domain_task, pilot_task
from tests.conftest import SHARED_DATA, requires_shared
from tests.medrag.french_fixtures import write_data_root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_data_root(tmp_path_factory.mktemp("suite-data"))


def test_suite_domains_parts_and_report_only(root):
    val = build_suite("val", data_root=root)
    assert list(val.domains) == list(DOMAINS)
    assert val.choice_domains == list(CHOICE_DOMAINS) and val.domains["sample"].report_only
    test = build_suite("test", data_root=root)
    # FrenchMedMCQA: dev for choices, test reported
    assert all("maladie 1" in q for q in val.domains["frenchmedmcqa"].task.queries.values())
    assert all("maladie 2" in q for q in test.domains["frenchmedmcqa"].task.queries.values())
    for name in ("leaflets", "cases", "abstracts"):
        assert not set(val.domains[name].task.corpus.values()) & set(test.domains[name].task.corpus.values())
    assert val.domains["sample"].task.queries == test.domains["sample"].task.queries
    assert "report-only" in val.describe()
    only = build_suite("val", data_root=root, domains=["cases"])
    assert list(only.domains) == ["cases"]


def test_errors(root, tmp_path):
    with pytest.raises(DataError, match="part"):
        domain_task("cases", "train", root)
    with pytest.raises(DataError, match="unknown suite domain"):
        build_suite("val", data_root=root, domains=["medquad"])
    with pytest.raises(DataError, match="does not exist"):
        build_suite("val", data_root=tmp_path, domains=["cases"])
    # audit: a string was read as its letters, and caps without pilot were ignored in silence
    with pytest.raises(DataError, match=r"domains must be a list of domain names, e.g. \['cases'\], not a string"):
        build_suite("val", data_root=root, domains="cases")
    for caps in ({"max_queries": 5}, {"max_passages": 50}):
        with pytest.raises(DataError, match="cap the pilot suite: pass pilot=True"):
            build_suite("val", data_root=root, domains=["cases"], **caps)


def test_tasks_and_suite_record_the_units_version(root):
    from medrag.qa.french_text import UNITS_VERSION

    suite = build_suite("val", data_root=root, domains=["leaflets", "cases"], pilot=True, max_queries=3)
    assert suite.settings["units_version"] == UNITS_VERSION == 2
    assert suite.settings["max_queries"] == 3 and suite.settings["max_passages"] == 1500
    assert all(d.task.extra["units_version"] == UNITS_VERSION for d in suite.domains.values())


def test_pilot_caps_keep_relevant_and_are_deterministic():
    pairs = [(f"question {i}", f"passage {i}") for i in range(50)] + [("question 0", "passage bis")]
    task = IRTask.from_pairs(pairs, extra_corpus=[f"distracteur {i}" for i in range(100)])
    small = pilot_task(task, max_queries=10, max_passages=30)
    assert len(small.queries) == 10 and len(small.corpus) == 30
    assert all(small.qrels[q] <= set(small.corpus) for q in small.queries)
    again = pilot_task(task, max_queries=10, max_passages=30)
    assert again.queries == small.queries and again.corpus == small.corpus
    assert pilot_task(task, 10, 30, seed=1).queries != small.queries
    assert pilot_task(task, 1000, 1000) is task
    tight = pilot_task(task, max_queries=10, max_passages=3)  # relevant passages never dropped
    assert all(tight.qrels[q] <= set(tight.corpus) for q in tight.queries) and len(tight.corpus) == 3
    with pytest.raises(DataError):
        pilot_task(task, 0, 10)


def test_pilot_suite(root):
    suite = build_suite("val", data_root=root, pilot=True, max_queries=4, max_passages=6)
    assert suite.pilot and all(len(d.task.queries) <= 4 and len(d.task.corpus) <= 6 for d in suite.domains.values())


@requires_shared
@pytest.mark.integration
def test_real_suite_sizes():
    suite = build_suite("val", pilot=True, data_root=SHARED_DATA)
    for d in suite.domains.values():
        assert 50 <= len(d.task.queries) <= 300 and len(d.task.corpus) <= 3000
    full = build_suite("test", data_root=SHARED_DATA, domains=["frenchmedmcqa"])
    assert len(full.domains["frenchmedmcqa"].task.queries) == 620
