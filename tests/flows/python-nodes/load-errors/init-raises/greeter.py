from promptflow.core import ToolProvider, tool


class Greeter(ToolProvider):
    def __init__(self, greeting: str, times: int = 1):
        super().__init__()
        if greeting == "boom":
            raise RuntimeError("no greeting today")
        self.greeting = greeting
        self.times = times

    @tool
    def greet(self, who: str) -> str:
        return " ".join([self.greeting] * self.times) + " " + who
