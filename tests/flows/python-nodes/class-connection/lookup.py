from promptflow.connections import CustomConnection
from promptflow.core import ToolProvider, tool


class Lookup(ToolProvider):
    def __init__(self, connection: CustomConnection, prefix: str = ">"):
        super().__init__()
        self.base = connection.configs["base"]
        self.key = connection.secrets["key"]
        self.prefix = prefix

    @tool
    def lookup(self, q: str) -> str:
        return f"{self.prefix} {self.base}/{q} ({len(self.key)})"
