"""promptflow's side of tests/corpus.rs: the oracle over promptflow's own flows.

Two commands, both run with the pf venv's python (target/pf-venv/bin/python):

  pf_oracle.py plan TREE MANIFEST JOBS
      Finds every flow.dag.yaml under TREE (a scratch copy of
      tests/vendor/promptflow), applies MANIFEST (tests/corpus/manifest.yaml:
      exclusions and inputs) and writes the jobs both tools run to JOBS (JSON),
      with each job's inputs file and generated run file under TREE/.corpus/.

  pf_oracle.py connections DIR
      Creates every connection file in DIR (`pf connection create --file`
      YAML; tests/corpus/connections.yaml with the loopback model's address)
      in the oracle's promptflow home, as `pf connection create` does.

  pf_oracle.py run TREE JOBS RESULTS [PARALLEL]
      Imports promptflow once, then runs each job in a forked child (its own
      sys.path, modules and working directory; no 3 s of pf start-up per flow)
      and writes every job's result to RESULTS (JSON): the outputs, or the
      error's type and message. Each flow test adds single-node jobs
      (`pf flow test --node`, kind "node:NAME"), run after it and listed in
      node-jobs.json beside RESULTS.

The flow test is what `pf flow test` does (promptflow/_cli/_pf/_flow.py,
_test_flow_standard: flows.test with allow_generator_output=False); the batch
run is what `pf run create --file` does (load_run, runs.create_or_update), its
outputs and metrics read from the run's folder as tests/conformance.rs reads
them.

With CORPUS_MODEL_PROXY (HOST:PORT, the loopback model) set, each job's
child sends all its HTTP through that address as its proxy, with the user
`pf-TAG` (model_proxy): the model tells the tools' requests apart by case,
and nothing a flow fetches leaves the machine.
"""

import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

from ruamel.yaml import YAML, YAMLError


def load_yaml(text):
    return YAML(typ="safe", pure=True).load(text)

# Data files a flow folder ships, in the order their first line is preferred
# as a flow test's inputs when the flow has inputs without a default.
INPUT_FILES = ("inputs.jsonl", "data.jsonl", "samples.json", "inputs.json")
# Data files a batch run reads (promptflow's batch runs take jsonl).
BATCH_FILES = ("data.jsonl", "inputs.jsonl")
TEST_TIMEOUT = 120
# Nodes a single-node test skips: they need a model or a connection, and the
# corpus's pf home has none, so pf cannot pass them (ConnectionNotFoundError).
NEEDS_A_MODEL = ("llm", "custom_llm")
BATCH_TIMEOUT = 240


def plan(tree, manifest_path, jobs_path):
    tree = Path(tree)
    manifest = load_yaml(Path(manifest_path).read_text()) or {}
    flows_cfg = manifest.get("flows") or {}
    corpus = tree / ".corpus"
    corpus.mkdir(exist_ok=True)
    jobs = []
    for dag in sorted(tree.rglob("flow.dag.yaml")):
        flow = dag.parent.relative_to(tree).as_posix()
        if "/.promptflow/" in f"/{flow}/":
            continue
        cfg = flows_cfg.get(flow) or {}
        jobs.append(test_job(tree, corpus, flow, dag, cfg))
        batch = batch_job(tree, corpus, flow, cfg)
        if batch:
            jobs.append(batch)
    unknown = sorted(set(flows_cfg) - {j["flow"] for j in jobs})
    if unknown:
        sys.exit(f"manifest.yaml names flows that are not in the corpus: {unknown}")
    Path(jobs_path).write_text(json.dumps(jobs, indent=1))


def job_id(flow, kind):
    return flow.replace("/", "__") + "." + kind


def test_job(tree, corpus, flow, dag, cfg):
    job = {"id": job_id(flow, "test"), "kind": "test", "flow": flow}
    if "exclude" in cfg:
        job["excluded"] = cfg["exclude"]
        return job
    inputs = cfg.get("inputs")
    if inputs is None:
        inputs = first_line_if_needed(tree / flow, dag)
    if inputs is not None:
        path = corpus / f"{job['id']}.inputs.jsonl"
        path.write_text(json.dumps(inputs) + "\n")
        job["inputs"] = path.relative_to(tree).as_posix()
    return job


def first_line_if_needed(folder, dag):
    """The first line of the flow's own data when an input has no default."""
    try:
        declared = (load_yaml(dag.read_text()) or {}).get("inputs") or {}
    except YAMLError:
        return None
    if not isinstance(declared, dict):
        return None
    required = [k for k, v in declared.items() if not (isinstance(v, dict) and "default" in v)]
    if not required:
        return None
    for name in INPUT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            if name.endswith(".jsonl"):
                first = json.loads(next(line for line in path.read_text().splitlines() if line.strip()))
            else:
                first = json.loads(path.read_text())
                first = first[0] if isinstance(first, list) else first
        except (ValueError, StopIteration, IndexError):
            continue
        if isinstance(first, dict):
            return {k: v for k, v in first.items() if k in declared}
    return None


def batch_job(tree, corpus, flow, cfg):
    if "exclude" in cfg:
        return None
    job = {"id": job_id(flow, "batch"), "kind": "batch", "flow": flow}
    if "exclude_batch" in cfg:
        job["excluded"] = cfg["exclude_batch"]
        return job
    job["name"] = "corpus_" + job["id"].replace(".", "_").replace("-", "_")
    own = tree / flow / "run.yml"
    if own.is_file() and "run" not in (load_yaml(own.read_text()) or {}):
        job["run_file"] = own.relative_to(tree).as_posix()
        return job
    data = next((tree / flow / n for n in BATCH_FILES if (tree / flow / n).is_file()), None)
    if data is None:
        return None
    path = corpus / f"{job['id']}.run.yml"
    back = "../" + flow
    path.write_text(f"flow: {back}\ndata: {back}/{data.name}\n")
    job["run_file"] = path.relative_to(tree).as_posix()
    return job


def finite(value):
    """JSON has no NaN or Infinity: name them, as pf's own dumps would not parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return {"__repr__": type(value).__name__}


def run_test(tree, job):
    from promptflow.client import PFClient

    inputs = {}
    if "inputs" in job:
        inputs = json.loads((tree / job["inputs"]).read_text().splitlines()[0])
    if "node" not in job:
        # Only this run's detail names the nodes that ran (node_jobs reads it).
        (tree / job["flow"] / ".promptflow" / "flow.detail.json").unlink(missing_ok=True)
    result = PFClient().flows.test(
        flow=job["flow"],
        inputs=inputs,
        node=job.get("node"),
        allow_generator_output=False,
        stream_output=False,
        dump_test_result=True,
    )
    if "node" in job:
        # A node's image outputs are paths relative to its flow's folder.
        result = absolute_images(result, tree / job["flow"])
    return {"ok": True, "output": result}


def node_jobs(tree, job):
    """The single-node tests after a flow test, one per node that can run alone.

    Only a flow test that got as far as running nodes (it wrote
    flow.detail.json) plans any: pf's node test loads every python node and
    resolves every connection of the flow first (test_submitter.py init,
    SubmitterHelper.resolve_connections, contracts/flow.py
    get_connection_names), so where the flow test failed to load, each node
    test fails the same way in pf and would count for nothing.
    A node the flow test ran gets the inputs it ran with, by parameter name
    (pf's resolve_data takes a node's inputs by name or by reference text);
    a node that did not run (bypassed, or after a failure) gets the flow
    test's inputs when it reads only flow inputs. A node that reads the
    output of a node that did not run is left out, and so are nodes
    NEEDS_A_MODEL names or that take a connection.
    """
    detail = tree / job["flow"] / ".promptflow" / "flow.detail.json"
    try:
        dag = load_yaml((tree / job["flow"] / "flow.dag.yaml").read_text()) or {}
    except (OSError, YAMLError):
        return []
    if not detail.is_file() or not isinstance(dag, dict):
        return []
    runs = ran_nodes(detail)
    flow_inputs = {}
    if "inputs" in job:
        flow_inputs = json.loads((tree / job["inputs"]).read_text().splitlines()[0])
    jobs = []
    for name, node in resolved_nodes(dag):
        bindings = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        if node.get("type") in NEEDS_A_MODEL or "connection" in bindings or "connection" in node:
            continue
        if name in runs:
            inputs = given_from_run(node, bindings, runs[name], aggregations(dag))
        else:
            inputs = given_from_flow_inputs(bindings, flow_inputs)
        if inputs is None:
            continue
        node_job = {"id": job_id(job["flow"], "node." + name), "kind": "node:" + name, "flow": job["flow"]}
        node_job["node"] = name
        path = tree / ".corpus" / f"{node_job['id']}.inputs.jsonl"
        path.write_text(json.dumps(inputs, ensure_ascii=False) + "\n")
        node_job["inputs"] = path.relative_to(tree).as_posix()
        jobs.append(node_job)
    return jobs


def ran_nodes(detail):
    """The flow test's completed node runs by node name (flow.detail.json's node_runs)."""
    try:
        runs = json.loads(detail.read_text()).get("node_runs") or []
    except (OSError, ValueError):
        return {}
    return {r["node"]: r for r in runs if isinstance(r, dict) and r.get("status") == "Completed"}


def resolved_nodes(dag):
    """(name, node) with a `use_variants` node replaced by its default variant's node."""
    variants = dag.get("node_variants") or {}
    for node in dag.get("nodes") or []:
        if not isinstance(node, dict) or "name" not in node:
            continue
        name = node["name"]
        if node.get("use_variants"):
            chosen = variants.get(name) or {}
            node = ((chosen.get("variants") or {}).get(chosen.get("default_variant_id")) or {}).get("node")
            if not isinstance(node, dict):
                continue
        yield name, node


def aggregations(dag):
    return {n.get("name") for n in dag.get("nodes") or [] if isinstance(n, dict) and n.get("aggregation")}


def reference(value):
    """("inputs", x) or (node, "") for a `${...}` binding, None for a literal."""
    if not (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
        return None
    head, _, rest = value[2:-1].partition(".")
    return (head, rest) if head == "inputs" else (head, "")


def given_from_run(node, bindings, run, aggregation_nodes):
    """The node run's inputs by parameter name; an aggregation node ran on
    1-item lists, which pf's node test makes again (flow_executor.py,
    load_and_exec_node), so each is given unwrapped."""
    ran = run.get("inputs") or {}
    given = {}
    for param, value in bindings.items():
        ref = reference(value)
        if ref is None or param not in ran:
            continue
        value = ran[param]
        if node.get("aggregation") and ref[0] not in aggregation_nodes and isinstance(value, list) and len(value) == 1:
            value = value[0]
        given[param] = value
    return given


def given_from_flow_inputs(bindings, flow_inputs):
    """The flow test's inputs for a node that reads only flow inputs (a missing
    one falls back to its default in pf as in flow-ci), None otherwise."""
    given = {}
    for param, value in bindings.items():
        ref = reference(value)
        if ref is None:
            continue
        if ref[0] != "inputs":
            return None
        if ref[1] in flow_inputs:
            given[param] = flow_inputs[ref[1]]
    return given


def absolute_images(value, base):
    """An image reference in output.jsonl ({"data:image/png;path": "images/x.png"},
    relative to the file's folder) as an absolute path, so the harness can read
    the image it names; {"type": "image_file", "image_file": {"path": ...}} in an
    openai-vision flow)."""
    if isinstance(value, dict):
        inner = value.get("image_file")
        if len(value) == 2 and value.get("type") == "image_file" and isinstance(inner, dict):
            if isinstance(inner.get("path"), str):
                return {"type": "image_file", "image_file": dict(inner, path=str(base / inner["path"]))}
        if len(value) == 1:
            ((key, path),) = value.items()
            if key.startswith("data:image/") and key.endswith(";path") and isinstance(path, str):
                return {key: str(base / path)}
        return {k: absolute_images(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [absolute_images(v, base) for v in value]
    return value


def run_batch(tree, job):
    from promptflow._sdk._load_functions import load_run
    from promptflow.client import PFClient

    pf = PFClient()
    run = load_run(source=job["run_file"], params_override=[{"name": job["name"]}])
    created = pf.runs.create_or_update(run=run)
    folder = Path(os.environ["HOME"]) / ".promptflow" / ".runs" / job["name"]
    outputs_file = folder / "flow_outputs" / "output.jsonl"
    outputs = []
    if outputs_file.is_file():
        lines = [json.loads(line) for line in outputs_file.read_text().splitlines() if line.strip()]
        outputs = [absolute_images(line, outputs_file.parent) for line in lines]
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return {"ok": created.status == "Completed", "status": created.status, "outputs": outputs, "metrics": metrics}


def create_connections(folder):
    """`pf connection create --file` for each file (promptflow/_cli/_pf/_connection.py, create_connection)."""
    from promptflow._sdk._load_functions import load_connection
    from promptflow.client import PFClient

    pf = PFClient()
    for path in sorted(Path(folder).glob("*.yaml")):
        pf.connections.create_or_update(load_connection(source=path))


def proxy_tag(job_id):
    """A job's id as a proxy user name (tests/corpus.rs, proxy_tag, is the same)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", job_id)


def model_proxy(job):
    """Every HTTP request of the job through the loopback model, tagged with the job."""
    address = os.environ.get("CORPUS_MODEL_PROXY")
    if not address:
        return
    url = f"http://pf-{proxy_tag(job['id'])}:x@{address}"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ[var] = os.environ[var.lower()] = url
    for var in ("NO_PROXY", "no_proxy"):
        os.environ.pop(var, None)


def fresh_locks():
    """promptflow makes its file locks at import; filelock refuses them in a forked child."""
    from filelock import FileLock
    from promptflow._sdk._orm import session
    from promptflow._sdk._utilities import general_utils

    for module, name in (
        (session, "lock"),
        (session, "trace_lock"),
        (general_utils, "_encryption_key_lock"),
        (general_utils, "_refresh_connection_dir_lock"),
    ):
        setattr(module, name, FileLock(getattr(module, name).lock_file))


def child(tree, job, results_dir):
    os.setpgid(0, 0)
    log = os.open(results_dir / f"{job['id']}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(tree)
    fresh_locks()
    model_proxy(job)
    started = time.monotonic()
    try:
        result = run_batch(tree, job) if job["kind"] == "batch" else run_test(tree, job)
    except BaseException as e:  # noqa: B036 -- the oracle records every failure as the flow's result
        result = {"ok": False, "type": error_type(e), "message": str(e)[:2000]}
    result["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(finite(result), ensure_ascii=False)
    if job["kind"] == "test":
        nodes = node_jobs(tree, job)
        (results_dir / f"{job['id']}.nodes.json").write_text(json.dumps(nodes, ensure_ascii=False))
    (results_dir / f"{job['id']}.json").write_text(text)
    os._exit(0)


def error_type(e):
    """The error's type; a failed test's UserErrorException names the node's
    own error first ("{ErrorType}: {message}", test_submitter.py
    _raise_error_when_test_failed)."""
    name = type(e).__name__
    head = str(e).split(":", 1)[0]
    return head if name == "UserErrorException" and head.isidentifier() else name


def run(tree, jobs_path, results_path, parallel):
    tree = Path(tree).resolve()
    jobs = [j for j in json.loads(Path(jobs_path).read_text()) if "excluded" not in j]
    results_dir = Path(results_path).resolve().parent / "pf-results"
    results_dir.mkdir(exist_ok=True)
    # promptflow's heavy imports once, before forking.
    import promptflow._sdk._load_functions  # noqa: F401
    import promptflow.client  # noqa: F401

    pending = list(jobs)
    running = {}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                child(tree, job, results_dir)
            timeout = BATCH_TIMEOUT if job["kind"] == "batch" else TEST_TIMEOUT
            running[pid] = (job, time.monotonic() + timeout)
        pid, _ = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            time.sleep(0.05)
            for pid, (job, deadline) in list(running.items()):
                if time.monotonic() > deadline:
                    kill_group(pid)
            continue
        job, _ = running.pop(pid)
        kill_group(pid)  # workers a batch run left behind
        nodes = follow_ups(results_dir, job)
        pending.extend(nodes)
        jobs.extend(nodes)
    write_node_jobs(jobs, Path(results_path).resolve().parent / "node-jobs.json")
    results = {}
    for job in jobs:
        path = results_dir / f"{job['id']}.json"
        if path.is_file():
            results[job["id"]] = json.loads(path.read_text())
        else:
            results[job["id"]] = {"ok": False, "type": "Timeout", "message": "the oracle's child did not finish"}
    Path(results_path).write_text(json.dumps(results, indent=1, ensure_ascii=False))


def follow_ups(results_dir, job):
    """The single-node jobs a finished flow test planned (node_jobs), if any."""
    path = results_dir / f"{job['id']}.nodes.json"
    return json.loads(path.read_text()) if job["kind"] == "test" and path.is_file() else []


def write_node_jobs(jobs, path):
    """The single-node jobs, for the harness to run through flow-ci once pf is done."""
    path.write_text(json.dumps([j for j in jobs if j["kind"].startswith("node:")], indent=1, ensure_ascii=False))


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    if sys.argv[1] == "plan":
        plan(*sys.argv[2:5])
    elif sys.argv[1] == "connections":
        create_connections(sys.argv[2])
    elif sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 2)
    else:
        sys.exit(f"usage: {sys.argv[0]} plan TREE MANIFEST JOBS | connections DIR | run TREE JOBS RESULTS [PARALLEL]")
