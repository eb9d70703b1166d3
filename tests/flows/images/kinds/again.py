from promptflow.contracts.multimedia import Image
from promptflow.core import tool


@tool
def again(described: dict) -> dict:
    """Images from another node's output arrive as Image again."""
    first = described["album"][0]
    return {"first": first, "is_image": isinstance(first, Image), "count": len(described["album"])}
