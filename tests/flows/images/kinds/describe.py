from promptflow.contracts.multimedia import Image
from promptflow.core import tool


@tool
def describe(picture: Image, encoded: Image, album: list, stamp: Image) -> dict:
    images = [picture, encoded, stamp] + album
    text = "; ".join("%s %s %d" % (type(i).__name__, i._mime_type, len(i)) for i in images)
    return {"text": text, "picture": picture, "album": album + [encoded, stamp]}
