"""Use a Chroma server: start `chroma run`, point the two-stage store at it with HttpClient.

In production the server runs on its own (e.g. `chroma run --path /data/chroma --host 0.0.0.0
--port 8000`, or the official Docker image); here the script starts one on 127.0.0.1 on a free
port, indexes the sample corpus, queries it from a second client, and stops the server.

Run: python examples/chroma_server.py
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chromadb

from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
from medrag.qa.sample import load_sample_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(path: str, port: int) -> subprocess.Popen:
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    proc = subprocess.Popen([chroma, "run", "--path", path, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
            return proc
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the Chroma server did not start")


if __name__ == "__main__":
    data_dir, port = tempfile.mkdtemp(prefix="chroma-server-"), free_port()
    server = start_server(data_dir, port)
    try:
        emb = MatryoshkaEmbeddings()
        corpus = load_sample_corpus()
        writer = MatryoshkaChroma("medrag", embedding_function=emb, client=chromadb.HttpClient(host="127.0.0.1", port=port))
        writer.add_texts(corpus.texts(), metadatas=[{"topic": p.topic} for p in corpus.passages], ids=corpus.ids())
        # Another process (here: another client) sees the full-size vectors too: they live in the records.
        reader = MatryoshkaChroma("medrag", embedding_function=emb, client=chromadb.HttpClient(host="127.0.0.1", port=port))
        for doc, distance in reader.similarity_search_with_score("Que signifie une ferritine basse ?", k=3):
            print(f"cosine distance {distance:.3f} [{doc.id}] {doc.page_content[:80]}...")
        assert len(reader) == len(corpus.passages)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
