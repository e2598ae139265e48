"""Hybrid search: the Matryoshka funnel fused with French BM25, with a lexical weight per query.

Builds a store on the French medical sample corpus (offline, the embedded default model), then
for a few questions prints the weight ``lexical_weight="auto"`` chose and, for each hit, where the
dense side scored it (full-size cosine) and where BM25 ranked it. The weight grows (0.2 to 0.4)
with how fully the best BM25 match covers the question's terms, each counted by its idf. Last,
the same search as a LangChain retriever. See docs/store.md, "Hybrid search".

Run: python examples/hybrid_search.py
"""

from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
from medrag.qa.sample import load_sample_corpus

QUESTIONS = [
    "kaliémie 6,2 mmol/L",                          # exact tokens: an analyte, a value, a unit
    "INR cible sous AVK",                           # acronyms
    "Mon potassium est à 6,2, est-ce grave ?",      # a lay question
]

corpus = load_sample_corpus()
store = MatryoshkaChroma.from_texts(
    corpus.texts(),
    embedding=MatryoshkaEmbeddings(),  # medrag-e5-small-fr, offline
    metadatas=[{"passage_id": p.passage_id, "topic": p.topic} for p in corpus.passages],
    ids=corpus.ids(),
    collection_name="hybrid-example",
)

if __name__ == "__main__":
    for question in QUESTIONS:
        result = store.search_with_stages(question, k=3, hybrid=True)  # the store's default: "auto"
        print(f"\n{question}\n  lexical weight chosen: {result.lexical_weight:.3f}")
        for rank, hit in enumerate(result.hits, 1):
            source = "" if hit.coarse_rank else " (found by BM25 only)"
            bm25 = f"BM25 rank {hit.lexical_rank}" if hit.lexical_rank else "no BM25 match"
            print(f"  {rank}. [{hit.document.metadata['passage_id']}] cosine {hit.score:.3f}{source}, {bm25}: "
                  f"{hit.document.page_content[:80]}...")
    retriever = store.as_retriever(search_type="hybrid", search_kwargs={"k": 2, "lexical_weight": "auto"})
    print("\nretriever:", [d.metadata["passage_id"] for d in retriever.invoke(QUESTIONS[0])])
    store.delete_collection()
