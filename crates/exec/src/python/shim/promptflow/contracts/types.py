"""promptflow.contracts.types (promptflow-core 1.18): the type hints tools
annotate parameters with."""
from dataclasses import dataclass
from typing import Any, List


class Secret(str):
    def set_secret_name(self, name):
        self.secret_name = name


class PromptTemplate(str):
    pass


class FilePath(str):
    pass


@dataclass
class AssistantDefinition:
    model: str
    instructions: str
    tools: List

    @staticmethod
    def deserialize(data: dict) -> "AssistantDefinition":
        return AssistantDefinition(
            model=data.get("model", ""), instructions=data.get("instructions", ""), tools=data.get("tools", [])
        )

    def serialize(self):
        return {"model": self.model, "instructions": self.instructions, "tools": self.tools}

    def __post_init__(self):
        self._tool_invoker = None


class AttrDict(dict):
    def __getattr__(self, key: str) -> Any:
        return self[key]

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value
