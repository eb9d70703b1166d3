from promptflow.core import tool


@tool
def ok(text: str) -> str:
    return "ok: " + text
