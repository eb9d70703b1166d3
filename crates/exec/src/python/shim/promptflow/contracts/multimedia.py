"""promptflow.contracts.multimedia as promptflow-core 1.18 defines it: an
image is its bytes, with a mime type (guessed from the bytes when not given,
as `filetype.guess_mime` does for the image formats) and the URL it came from."""
import base64
import hashlib

# Leading bytes of the image formats `filetype` recognises first, and their mime types.
_SIGNATURES = [
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/bmp"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"8BPS", "image/vnd.adobe.photoshop"),
]


def _guess_mime(value):
    if len(value) > 11 and value[:4] == b"RIFF" and value[8:12] == b"WEBP":
        return "image/webp"
    for prefix, mime in _SIGNATURES:
        if value.startswith(prefix):
            return mime
    return None


class PFBytes(bytes):
    def __new__(cls, value, *args, **kwargs):
        return super().__new__(cls, value)

    def __init__(self, value, mime_type, source_url=None):
        super().__init__()
        self._hash = hashlib.sha1(value).hexdigest()[:8]
        self._mime_type = mime_type.lower()
        self._source_url = source_url

    @property
    def source_url(self):
        return self._source_url

    def to_base64(self, with_type=False):
        if with_type:
            return f"data:{self._mime_type};base64," + base64.b64encode(self).decode("utf-8")
        return base64.b64encode(self).decode("utf-8")


class Image(PFBytes):
    def __init__(self, value, mime_type=None, source_url=None):
        if mime_type is None:
            mime_type = _guess_mime(value) or "image/*"
        return super().__init__(value, mime_type, source_url)

    def __str__(self):
        return f"Image({self._hash})"

    def __repr__(self):
        return f"Image({self._hash})"

    def serialize(self, encoder=None):
        if encoder is None:
            return self.__str__()
        return encoder(self)


class Text(str):
    def __new__(cls, value, annotations=None):
        obj = str.__new__(cls, value)
        obj._annotations = annotations
        return obj

    @classmethod
    def deserialize(cls, data):
        text = data.get("text", "")
        if isinstance(text, dict):
            return cls(value=text.get("value", ""), annotations=text.get("annotations", []))
        return cls(value=text)

    def serialize(self):
        if self._annotations is None:
            return {"type": "text", "text": self}
        return {"type": "text", "text": {"value": self, "annotations": self._annotations}}
