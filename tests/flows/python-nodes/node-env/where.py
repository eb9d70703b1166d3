"""Where promptflow runs a node's code: the module name, __file__, the
working directory and sys.path. The decorator spans lines on purpose."""
import os
import sys

from promptflow.core import tool

from helper import shout


@tool(
    name="where",
    description="reports the node's environment",
)
def where(text: str) -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    with open("greetings.txt") as f:  # an additional include, relative to the working directory
        first = f.readline().strip()
    return {
        "name": __name__,
        "file": os.path.basename(__file__),
        "cwd_is_flow_folder": os.path.samefile(os.getcwd(), here) and os.path.exists("flow.dag.yaml"),
        "flow_folder_first_on_path": os.path.samefile(sys.path[0] or ".", here),
        "greeting": shout(first),
        "text": text,
    }
