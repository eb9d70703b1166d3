"""flow-ci python worker: runs promptflow python tools for the Rust executor.

Protocol: one JSON request per line on stdin, one JSON response per line on
the original stdout. User code's prints go to stderr (fd 1 is redirected), so
they can never corrupt the protocol. Modules are imported once per worker.
"""
import asyncio
import dataclasses
import importlib.util
import inspect
import json
import os
import signal
import sys
import traceback

PROTOCOL = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

METRICS = None  # dict while an aggregation node runs; log_metric writes here


def record_metric(key, value, variant_id=None):
    if METRICS is not None:
        METRICS[key] = value


def install_promptflow():
    """Use the real promptflow when installed, else the bundled shim."""
    try:
        import promptflow.core  # noqa: F401
        from promptflow._core.metric_logger import add_metric_logger

        add_metric_logger(lambda key, value, variant_id=None: record_metric(key, value, variant_id))
        return "promptflow"
    except Exception:
        for name in [m for m in sys.modules if m == "promptflow" or m.startswith("promptflow.")]:
            del sys.modules[name]
        sys.path.insert(0, os.environ["FLOW_CI_SHIM"])
        import promptflow._flow_ci as shim

        shim.set_metric_sink(record_metric)
        return "shim"


MODULES = {}


def is_tool(obj):
    return inspect.isfunction(obj) and hasattr(obj, "__tool")


def import_file(path, working_dir):
    """The module of a node's (or a port's) file, imported once per worker."""
    key = os.path.abspath(path)
    if key in FILES:
        return FILES[key]
    if working_dir not in sys.path:
        sys.path.insert(0, working_dir)
    name = "flow_ci_tool_%d_%s" % (len(FILES), os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, key)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    FILES[key] = module
    return module


FILES = {}


def load_tool(path, working_dir):
    key = os.path.abspath(path)
    if key in MODULES:
        return MODULES[key]
    module = import_file(path, working_dir)
    tools = [f for _, f in inspect.getmembers(module) if is_tool(f) and f.__module__ == module.__name__]
    if len(tools) != 1:
        raise ToolLoadError(
            "No tool found in the python script. Please make sure you have one and only one tool definition in your script."
            if not tools
            else "Expected 1 but collected %d tools: %s." % (len(tools), ", ".join(f.__name__ for f in tools))
        )
    MODULES[key] = tools[0]
    return tools[0]


DEFAULT_FACTORY = "create_workflow"


def workflow_factory(req):
    """How a port gives a workflow, as the migration guide's workflow_loader
    finds one: the named factory, else create_workflow(), else a
    module-level `workflow` (reused: lines run one at a time per worker)."""
    module = import_file(req["file"], req["working_dir"])
    shown = os.path.basename(req["file"])
    name = req["workflow"].get("factory")
    if name:
        factory = getattr(module, name, None)
        if not callable(factory):
            raise ToolLoadError("%s has no function %s() that builds the workflow." % (shown, name))
        return module, factory
    factory = getattr(module, DEFAULT_FACTORY, None)
    if callable(factory):
        return module, factory
    if hasattr(module, "workflow"):
        workflow = module.workflow
        return module, lambda: workflow
    raise ToolLoadError(
        "%s defines neither %s() nor a module-level `workflow`; name its factory as FILE.py:FACTORY."
        % (shown, DEFAULT_FACTORY)
    )


def start_message(module, req):
    """The mapped inputs as the workflow's start message: an instance of the
    named start class, else the one input itself, else a dict of them."""
    kwargs = req.get("kwargs", {})
    name = req["workflow"].get("start")
    if name:
        cls = getattr(module, name, None)
        if cls is None:
            raise ToolLoadError("%s has no class %s for the start message." % (os.path.basename(req["file"]), name))
        return cls(**kwargs)
    if len(kwargs) == 1:
        return next(iter(kwargs.values()))
    return dict(kwargs)


def load_workflow(req):
    """Imports a port and finds its factory (and start class) before any line runs."""
    module, factory = workflow_factory(req)
    start = req["workflow"].get("start")
    if start and getattr(module, start, None) is None:
        raise ToolLoadError("%s has no class %s for the start message." % (os.path.basename(req["file"]), start))
    output = {"name": getattr(factory, "__name__", "workflow"), "connection_params": []}
    return {"ok": True, "output": output, "metrics": {}}


def run_workflow(req):
    module, factory = workflow_factory(req)
    # A fresh workflow per line: MAF workflows do not run concurrently, and
    # one line's state must not leak into the next.
    workflow = factory()
    result = asyncio.run(workflow.run(start_message(module, req)))
    return {"ok": True, "output": [to_json(o) for o in result.get_outputs()], "metrics": {}}


class ToolLoadError(Exception):
    pass


def value_type(annotation):
    """promptflow's ValueType for a parameter annotation (first of a Union)."""
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and getattr(annotation, "__args__", None):
        if str(origin) == "typing.Union":
            annotation = annotation.__args__[0]
        else:
            annotation = origin
    return {int: "int", float: "double", bool: "bool", str: "string", list: "list", dict: "object"}.get(annotation)


def parse_literal(value, vtype):
    """ValueType.parse for literal node inputs."""
    if vtype == "int":
        return int(value)
    if vtype == "double":
        return float(value)
    if vtype == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("Invalid boolean value %r" % (value,))
    if vtype == "string":
        return str(value)
    if vtype == "list":
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, list):
            raise ValueError("Invalid list value %r" % (value,))
        return value
    if vtype == "object" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def connection_class_name(annotation):
    """The connection class a parameter is annotated with (first of a Union), if any."""
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) is not None and args:
        annotation = args[0]
    name = getattr(annotation, "__name__", "")
    return name if name.endswith("Connection") else None


def connection_params(func):
    params = inspect.signature(func).parameters
    return [name for name, p in params.items() if connection_class_name(p.annotation)]


def make_connection(annotation, spec):
    """promptflow's connection object, built from flow-ci's resolved definition."""
    import promptflow.connections as connections

    cls = getattr(connections, spec["type"], None)
    if cls is None:
        raise TypeError("Connection type %s is not available in promptflow.connections" % spec["type"])
    values = dict(spec["values"])
    name = values.pop("name", None)
    conn = cls(**values)
    try:
        conn.name = name
    except Exception:  # noqa: BLE001 - read-only name on some versions
        pass
    return conn


def build_kwargs(func, req):
    params = inspect.signature(func).parameters
    kwargs = {}
    connections = req.get("connections") or {}
    for key, value in req.get("kwargs", {}).items():
        if key in connections:
            kwargs[key] = make_connection(params[key].annotation if key in params else None, connections[key])
            continue
        if key in req.get("literals", ()):
            if value is None or value == "":
                continue  # promptflow drops empty literals so the tool's default applies
            param = params.get(key)
            vtype = value_type(param.annotation) if param is not None else None
            if vtype:
                value = parse_literal(value, vtype)
        if key in req.get("bypassed", ()):
            param = params.get(key)
            if param is not None and param.default is not inspect.Parameter.empty:
                continue
            value = None
        kwargs[key] = value
    return kwargs


def to_json(value):
    if inspect.isgenerator(value) or isinstance(value, (map, filter)):
        return "".join(str(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump") and not isinstance(value, type):  # pydantic models, which MAF uses
        return value.model_dump(mode="json")
    return value


def encode(value):
    return json.dumps(value, ensure_ascii=False, default=lambda o: to_json(o) if to_json(o) is not o else str(o))


def call(req):
    global METRICS
    func = load_tool(req["file"], req["working_dir"])
    kwargs = build_kwargs(func, req)
    METRICS = {} if req.get("aggregation") else None
    try:
        if inspect.iscoroutinefunction(func):
            output = asyncio.run(func(**kwargs))
        else:
            output = func(**kwargs)
        output = to_json(output)
        return {"ok": True, "output": output, "metrics": METRICS or {}}
    finally:
        METRICS = None


RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


def error_response(exc, phase):
    """The exception with a traceback of user frames only (no worker or shim)."""
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list(
        [f for f in tb.stack if not (f.filename or "").startswith((RUNTIME_DIR, "<frozen"))]
    )
    where = None
    if isinstance(exc, SyntaxError) and exc.filename:
        where = [exc.filename, exc.lineno or 1]
    elif tb.stack:
        where = [tb.stack[-1].filename, tb.stack[-1].lineno]
    return {
        "ok": False,
        "error": {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(tb.format()),
            "phase": phase,
            "where": where,
        },
    }


def main():
    # Ctrl-C reaches the whole process group; flow-ci decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    flavor = install_promptflow()
    PROTOCOL.write(json.dumps({"ready": True, "promptflow": flavor, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            if req.get("workflow") is not None:
                resp = load_workflow(req) if req.get("op") == "load" else run_workflow(req)
            elif req.get("op") == "load":
                func = load_tool(req["file"], req["working_dir"])
                output = {"name": func.__name__, "connection_params": connection_params(func)}
                resp = {"ok": True, "output": output, "metrics": {}}
            else:
                resp = call(req)
        except ToolLoadError as exc:
            resp = error_response(exc, "load")
        except (SyntaxError, ImportError) as exc:
            resp = error_response(exc, "load" if os.path.abspath(req["file"]) not in FILES else "call")
        except BaseException as exc:  # noqa: BLE001 - every failure belongs to the line
            if isinstance(exc, KeyboardInterrupt):
                raise
            resp = error_response(exc, "call")
        resp["id"] = req.get("id")
        try:
            PROTOCOL.write(encode(resp) + "\n")
        except (TypeError, ValueError) as exc:
            resp = error_response(exc, "call")
            resp["id"] = req.get("id")
            PROTOCOL.write(json.dumps(resp) + "\n")


if __name__ == "__main__":
    main()
