"""flow-with_tool_settings and python_tool_deployment_name decorate their
tools with promptflow._core.tool's `tool`, giving `InputSetting`s."""
from promptflow._core.tool import InputSetting, tool


@tool(
    description="tool with input settings",
    input_settings={"k": InputSetting(enabled_by="user_type", enabled_by_value=["t"], undefined_field={"a": 1})},
    unknown_key="value",
)
def decorated(k=""):
    return k
