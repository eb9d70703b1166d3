#!/usr/bin/env python3
"""Generates a repository of N promptflow flows for flow-ci benchmarks.

Usage: gen_bench_repo.py DIR FLOWS [--change N]
  Without --change: writes DIR with FLOWS flow folders (python + prompt node,
  run.yml, data.jsonl), shared modules used by ~5% of the flows through
  additional_includes or `../` sources, and a .flow-ci.yaml listing ~100 flows.
  With --change N: edits N files spread across the flows plus one shared module.
"""
import os
import sys

FLOW = """inputs:
  text:
    type: string
  style:
    type: string
    default: short
outputs:
  answer:
    type: string
    reference: ${{answer.output}}
nodes:
- name: prompt
  type: prompt
  source:
    type: code
    path: prompt.jinja2
  inputs:
    text: ${{inputs.text}}
    style: ${{inputs.style}}
- name: answer
  type: python
  source:
    type: code
    path: answer.py
  inputs:
    prompt: ${{prompt.output}}
{extra}"""
TOOL = "from promptflow.core import tool\n\n\n@tool\ndef answer(prompt: str) -> str:\n    return prompt.upper()  # flow {n}\n"
PROMPT = "# system:\nAnswer in a {{{{ style }}}} way.\n# user:\n{{{{ text }}}}\n"
RUN = "flow: .\ndata: data.jsonl\ncolumn_mapping:\n  text: ${data.text}\n"


def flow_dir(n):
    return "flows/group-%02d/flow-%05d" % (n % 50, n)


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def generate(root, count):
    for s in range(10):
        write(root, "shared/mod_%d.py" % s, "def helper_%d(x):\n    return x\n" % s)
    config = ["flows:"]
    for n in range(count):
        d = flow_dir(n)
        extra = ""
        if n % 40 == 0:  # 2.5%: additional_includes
            extra = "additional_includes:\n- ../../../shared/mod_%d.py\n" % ((n // 40) % 10)
        elif n % 40 == 20:  # 2.5%: a node whose source is outside the folder
            extra = ("- name: shared\n  type: python\n  source:\n    type: code\n    path: ../../../shared/tool_%d.py\n"
                     "  inputs:\n    prompt: ${prompt.output}\n" % (n % 10))
        write(root, d + "/flow.dag.yaml", FLOW.format(extra=extra))
        write(root, d + "/answer.py", TOOL.format(n=n))
        write(root, d + "/prompt.jinja2", PROMPT.format())
        write(root, d + "/run.yml", RUN)
        write(root, d + "/data.jsonl", '{"text": "hello %d"}\n{"text": "world %d"}\n' % (n, n))
        if n % 100 == 0:
            config.append("  - path: %s\n    run: %s/run.yml" % (d, d))
    for s in range(10):
        write(root, "shared/tool_%d.py" % s, TOOL.format(n="shared %d" % s))
    write(root, ".flow-ci.yaml", "\n".join(config) + "\n")


def change(root, count, total):
    step = max(1, total // count)
    for i in range(count):
        n = (i * step + 7) % total
        path = os.path.join(root, flow_dir(n), "answer.py")
        with open(path, "a") as f:
            f.write("# changed\n")
    with open(os.path.join(root, "shared/mod_3.py"), "a") as f:
        f.write("# changed\n")


if __name__ == "__main__":
    root, flows = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) > 3 and sys.argv[3] == "--change":
        change(root, int(sys.argv[4]), flows)
    else:
        generate(root, flows)
