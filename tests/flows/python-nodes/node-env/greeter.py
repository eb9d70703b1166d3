from promptflow.core import ToolProvider, tool

from helper import shout


class Greeter(ToolProvider):
    """A class-based tool: `__init__` takes the node's literal inputs
    `greeting` and `times`, the @tool method the rest."""

    def __init__(self, greeting: str, times: int = 1):
        super().__init__()
        self.greeting = greeting
        self.times = times
        self.calls = 0

    @tool
    def greet(self, who: str, punctuation: str = "!") -> str:
        self.calls += 1
        return " ".join([shout(self.greeting)] * self.times) + " " + who + punctuation
