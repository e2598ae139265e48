"""A LangChain RAG chain (LCEL) on medrag's two-stage store, offline.

The retriever searches the French medical sample corpus with 64-dim coarse vectors and reranks
with full-size ones; the prompt stuffs the passages; a chat model answers. Offline, the chat
model is langchain-core's fake one, which returns a canned answer; the script prints the prompt
the model received, so you can see exactly what a real model would get. To use a real model,
replace the `llm = ...` line:

    from langchain_openai import ChatOpenAI          # pip install langchain-openai
    llm = ChatOpenAI(model="gpt-4o-mini")           # or ChatMistralAI, ChatOllama, ...

Run: python examples/rag_chain.py
"""

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

from medrag import MatryoshkaChroma, MatryoshkaEmbeddings
from medrag.qa.sample import load_sample_corpus

corpus = load_sample_corpus()
store = MatryoshkaChroma.from_texts(
    corpus.texts(),
    embedding=MatryoshkaEmbeddings(),  # medrag-e5-small-fr, offline; use "intfloat/multilingual-e5-large" in production
    metadatas=[{"passage_id": p.passage_id, "topic": p.topic} for p in corpus.passages],
    ids=corpus.ids(),
    collection_name="rag-example",
)
retriever = store.as_retriever(search_kwargs={"k": 3})

prompt = ChatPromptTemplate.from_messages([
    ("system", "Tu es un assistant médical. Réponds en français, uniquement à partir des extraits fournis, "
               "et cite leurs identifiants. Si les extraits ne suffisent pas, dis-le.\n\nExtraits :\n{context}"),
    ("human", "{question}"),
])
llm = FakeListChatModel(responses=["(réponse du modèle : remplacez FakeListChatModel par un vrai modèle)"])


def format_docs(docs):
    return "\n\n".join(f"[{d.metadata['passage_id']}] {d.page_content}" for d in docs)


rag_prompt = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt
chain = rag_prompt | llm | StrOutputParser()

if __name__ == "__main__":
    question = "Mon potassium est à 6,2, est-ce grave ?"
    for message in rag_prompt.invoke(question).to_messages():  # what the chat model receives
        print(f"--- {message.type}\n{message.content}")
    print("--- answer\n" + chain.invoke(question))
