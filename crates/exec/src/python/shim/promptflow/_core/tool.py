"""promptflow._core.tool, which flows import `tool` and `InputSetting` from
(promptflow-core 1.18, promptflow/_core/tool.py). Input settings only
describe a tool's inputs to an editor, so they are kept, never read."""
from promptflow._flow_ci import tool  # noqa: F401
from promptflow.core import ToolProvider  # noqa: F401


class _Settings:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class DynamicList(_Settings):
    pass


class GeneratedBy(_Settings):
    pass


class InputSetting:
    def __init__(self, **kwargs):
        self.is_multi_select = kwargs.pop("is_multi_select", None)
        self.allow_manual_entry = kwargs.pop("allow_manual_entry", None)
        self.enabled_by = kwargs.pop("enabled_by", None)
        self.enabled_by_value = kwargs.pop("enabled_by_value", None)
        self.dynamic_list = kwargs.pop("dynamic_list", None)
        self.generated_by = kwargs.pop("generated_by", None)
        self._kwargs = kwargs
