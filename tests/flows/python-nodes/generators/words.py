from promptflow.core import tool


def words(text):
    for word in text.split():
        yield word + "."


@tool
def split_words(text: str) -> dict:
    # A generator inside the output: `${split.output.answer}` is joined.
    return {"answer": words(text), "count": len(text.split())}
