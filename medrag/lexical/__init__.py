"""Lexical (BM25) search for French medical text: the analyzer, the index and rank fusion.

``medrag.lexical.analyzer`` turns text into terms, ``medrag.lexical.bm25`` keeps a BM25
index derived from a store's records, ``medrag.lexical.fusion`` merges a lexical and a dense
ranking. Nothing is imported here: import the submodule you need.
"""
