import os
import time

from promptflow.core import tool

# Long enough for any test machine; a gate never opened fails the line
# instead of holding the server forever.
GATE_WAIT_SECONDS = 120


def answer(question: str, gate: str, fail: bool):
    words = question.split()
    yield words[0]
    deadline = time.monotonic() + GATE_WAIT_SECONDS
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} was never opened")
        time.sleep(0.02)
    if fail:
        raise ValueError("the stream broke after its first item")
    for word in words[1:]:
        yield " " + word


@tool
def stream(question: str, gate: str, fail: bool = False):
    return answer(question, gate, fail)
