from promptflow._flow_ci import log_metric, tool  # noqa: F401
from promptflow.connections import AzureOpenAIConnection, CustomConnection, OpenAIConnection  # noqa: F401


class ToolProvider:
    """The base of class-based tools, as promptflow/_core/tool.py has it: a
    subclass's `__init__` parameters are given by literal node inputs and
    recorded in `_init_params`; its one `@tool` method is the node's tool."""

    _instance_init_params = None

    def __new__(cls, *args, **kwargs):
        import inspect

        names = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
        cls._instance_init_params = {**dict(zip(names, args)), **kwargs}
        return super().__new__(cls)

    def __init__(self):
        self._init_params = self._instance_init_params
