"""A small stand-in for the `promptflow` package, bundled with flow-ci so
flows run without promptflow installed. Only what tools import is here."""
from promptflow._flow_ci import log_metric, tool, trace  # noqa: F401
from promptflow.core import ToolProvider  # noqa: F401
from promptflow.connections import (  # noqa: F401
    AzureOpenAIConnection,
    CustomConnection,
    OpenAIConnection,
    ServerlessConnection,
)
