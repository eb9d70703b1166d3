from promptflow.core import tool


@tool
async def shout(text: str):
    for word in text.split():
        yield word.upper() + " "
