from medrag.qa.sample import load_sample_corpus


def test_sample_corpus_shape_and_split():
    corpus = load_sample_corpus()
    ids = corpus.ids()
    assert len(ids) == len(set(ids)) >= 190
    assert len(corpus.pairs()) >= 300
    for p in corpus.passages:
        assert 40 <= len(p.passage.split()) <= 150, p.passage_id
        assert p.questions and all(q.strip() for q in p.questions)
        assert p.split in ("train", "eval")
    train = {a for _, a in corpus.pairs("train")}
    evals = {a for _, a in corpus.pairs("eval")}
    assert not train & evals  # split by passage: no leakage
    assert len(corpus.pairs("eval")) >= 60


def test_questions_are_not_copies_of_their_passage():
    for p in load_sample_corpus().passages:
        for q in p.questions:
            assert q.rstrip(" ?") not in p.passage, (p.passage_id, q)
