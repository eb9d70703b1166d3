"""Every `promptflow` import of promptflow's own DAG flows that the stand-in
covers (src/promptflow/tests/test_configs/flows, examples/flows/{standard,
evaluation,chat} at 6e76ef49; the flow that needs each is named), and what
those flows do with what they import."""
import promptflow  # eval-summarization, named-entity-recognition
from promptflow import log_metric as top_log_metric  # eval_flow_with_image_resume_random_fail
from promptflow import tool as top_tool  # chat_group_simulation
from promptflow.connections import (  # most flows with connections
    AzureOpenAIConnection,
    CustomConnection,
    CustomStrongTypeConnection,  # flow_with_script_tool_with_custom_strong_type_connection
    OpenAIConnection,
)
from promptflow.contracts.types import AssistantDefinition, Secret  # assistant-*, custom strong type
from promptflow.core import ToolProvider, log_metric, tool  # nearly every flow; script_tool_with_init
from promptflow.exceptions import SystemErrorException  # assistant-* flows
from promptflow.tracing import start_trace, trace  # assistant-*, trace flows
from settings_tool import decorated  # promptflow._core.tool's tool and InputSetting; not this file's tool


def attempt(f):
    try:
        v = f()
        return v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v)
    except Exception as e:  # noqa: BLE001 - the error is what is compared
        return "%s: %s" % (type(e).__name__, e)


class MyCustomConnection(CustomStrongTypeConnection):
    api_key: Secret
    api_url: str = "This is a fake api url."


@trace
def traced(x):
    return x * 2


@tool
def probe(key: str):
    c = CustomConnection(configs={"base": "http://b"}, secrets={key: "secret"}, name="my")
    a = AzureOpenAIConnection(api_key="ak", api_base="http://a", name="az")
    meid = AzureOpenAIConnection(api_base="http://a", auth_mode="meid_token")
    o = OpenAIConnection(api_key="ok", base_url="")
    s = MyCustomConnection(configs={"api_url": "http://u"}, secrets={"api_key": "sk"})
    return {
        "custom": {
            "index": attempt(lambda: c[key]),
            "config by index": attempt(lambda: c["base"]),
            "missing": attempt(lambda: c["missing"]),
            "attribute": attempt(lambda: getattr(c, key)),
            "missing attribute": attempt(lambda: c.missing),
            "configs": c.configs,
            "secrets": c.secrets,
            "keys": c.keys(),
            "unpacked": attempt(lambda: dict(**c)),
            "is_secret": attempt(lambda: c.is_secret(key)),
            "name, type": [c.name, c.type, c.class_name, c.module],
        },
        "azure": {
            "attributes": [a.api_key, a.api_base, a.api_type, a.api_version, a.auth_mode, a.resource_id, a.type],
            "index": attempt(lambda: [a["api_key"], a["api_base"], a["api_version"]]),
            "keys": sorted(a.keys()),
            "secrets": a.secrets,
            "meid api_key": attempt(lambda: meid.api_key),
            "meid secrets": meid.secrets,
        },
        "openai": [o.api_key, o.base_url, o.organization, o.type, sorted(o.keys())],
        "strong type": {
            "attributes": attempt(lambda: [s.api_key, s.api_url]),
            "configs": s.configs,
            "secrets": s.secrets,
            "custom_type": s.custom_type,
        },
        "types": [issubclass(Secret, str), AssistantDefinition.deserialize({"model": "m"}).serialize()],
        "exceptions": [
            str(SystemErrorException("boom")),
            SystemErrorException(message_format="{a} failed", a="x").message,
            str(SystemErrorException()),
        ],
        "tools": [traced(2), decorated(k="v"), start_trace() is None],
        "same tool": [top_tool is tool, promptflow.tool is tool, top_log_metric is log_metric],
        "tool provider": issubclass(ToolProvider, object),
    }
