"""flow-ci python worker: runs promptflow python tools for the Rust executor.

Protocol: one JSON request per line on stdin, one JSON response per line on
the original stdout. User code's prints go to stderr (fd 1 is redirected), so
they can never corrupt the protocol. Modules are imported once per worker.
"""
import asyncio
import collections.abc
import dataclasses
import importlib.util
import inspect
import json
import os
import re
import signal
import sys
import traceback
import types

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


# The directory flow-ci started the worker in: request paths are relative to
# it, and node code runs in the flow's working directory (see `enter`).
BASE_DIR = os.getcwd()


def resolve(path):
    return os.path.normpath(os.path.join(BASE_DIR, path))


def enter(working_dir):
    """The working directory and sys.path promptflow gives a node: the flow
    folder (its snapshot when it has additional_includes) is the current
    directory (flow_executor.py, FlowExecutor.create and exec_line run under
    `_change_working_dir(working_dir)`) and is first on sys.path
    (contracts/flow.py, Flow._update_working_dir inserts it at 0)."""
    working_dir = resolve(working_dir)
    if working_dir not in sys.path:
        sys.path.insert(0, working_dir)
    if os.getcwd() != working_dir:
        os.chdir(working_dir)


PF_MAIN_MODULE_NAME = "__pf_main__"  # promptflow/_constants.py


def is_tool(obj):
    """promptflow/_core/tool_meta_generator.py, is_tool: a plain function with `__tool`."""
    return isinstance(obj, types.FunctionType) and hasattr(obj, "__tool")


FILES = {}


def import_file(path, working_dir):
    """A port's module, imported once per worker."""
    key = resolve(path)
    if key in FILES:
        return FILES[key]
    enter(working_dir)
    name = "flow_ci_tool_%d_%s" % (len(FILES), os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, key)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    FILES[key] = module
    return module


def import_node_file(path, working_dir):
    """A node's module as promptflow loads it (tool_meta_generator.py,
    load_python_module_from_file): named `__pf_main__`, from its resolved
    path (so `__file__` is absolute), not entered in sys.modules. Once per
    worker, as promptflow resolves each tool once per process."""
    key = resolve(path)
    if key in FILES:
        return FILES[key]
    enter(working_dir)
    spec = importlib.util.spec_from_file_location(PF_MAIN_MODULE_NAME, os.path.realpath(key))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    FILES[key] = module
    return module


class Tool:
    """A node's tool: a function, or a `@tool` method of a ToolProvider
    subclass whose `__init__` parameters are given by literal node inputs."""

    def __init__(self, func, cls=None):
        self.func = func
        self.cls = cls
        self.init_params = {}
        if cls is not None:
            self.init_params = {
                k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"
            }
        self.instances = {}
        # tool_meta_generator.py, _parse_tool_from_function: the tool's name
        # is @tool(name=...) or the function's qualified name.
        self.name = getattr(func, "__name", None) or func.__qualname__

    def params(self):
        """Every input the node may give: the method's and `__init__`'s."""
        params = dict(inspect.signature(self.func).parameters)
        if self.cls is not None:
            params.pop("self", None)
        return {**self.init_params, **params}


def tool_provider_class():
    try:
        from promptflow.core import ToolProvider

        return ToolProvider
    except ImportError:
        return None


def collect_tools(module):
    """tool_meta_generator.py, collect_tool_function_in_module: functions
    decorated with @tool defined in the module, and @tool methods of the
    ToolProvider subclasses it defines; exactly one."""
    functions = [Tool(f) for _, f in inspect.getmembers(module) if is_tool(f) and f.__module__ == module.__name__]
    methods = []
    provider = tool_provider_class()
    for _, cls in inspect.getmembers(module):
        if isinstance(cls, type) and provider is not None and issubclass(cls, provider) and cls.__module__ == module.__name__:
            methods.extend(Tool(m, cls) for _, m in inspect.getmembers(cls) if is_tool(m))
    tools = functions + methods
    if not tools:
        raise ToolLoadError(
            "No tool found in the python script. Please make sure you have one and only one tool definition in your script."
        )
    if len(tools) > 1:
        raise ToolLoadError(
            "Expected 1 but collected %d tools: %s. Please make sure you have one and only one tool definition in your script."
            % (len(tools), ", ".join(t.func.__name__ for t in tools))
        )
    return tools[0]


MODULES = {}


def load_tool(path, working_dir):
    key = resolve(path)
    if key in MODULES:
        enter(working_dir)
        return MODULES[key]
    tool = collect_tools(import_node_file(path, working_dir))
    MODULES[key] = tool
    return tool


def load_node_tool(req):
    """A node's tool: from its file, or a package tool by its id."""
    if req.get("package"):
        enter(req["working_dir"])
        return load_package_tool(req["package"])
    return load_tool(req["file"], req["working_dir"])


PACKAGE_TOOLS_ENTRY = "package_tools"  # promptflow/_core/tools_manager.py
PACKAGE_TOOLS = None  # {id: (tool definition, distribution name)}, read once per worker
PACKAGE_FAILURES = []  # (distribution, error) of entry points that did not load


def package_tools():
    """Every tool installed packages register, as tools_manager.py,
    collect_package_tools finds them: each `package_tools` entry point is a
    function returning {tool id: definition}; a package whose entry point
    fails is left out (promptflow logs a warning)."""
    global PACKAGE_TOOLS
    if PACKAGE_TOOLS is not None:
        return PACKAGE_TOOLS
    import importlib.metadata

    found = {}
    entry_points = importlib.metadata.entry_points()
    group = entry_points.select(group=PACKAGE_TOOLS_ENTRY) if hasattr(entry_points, "select") else entry_points.get(PACKAGE_TOOLS_ENTRY, [])
    for entry_point in group:
        dist = entry_point.dist.metadata["Name"] if entry_point.dist is not None else entry_point.value
        try:
            for identifier, definition in entry_point.load()().items():
                found[identifier] = (definition, dist)
        except Exception as exc:  # noqa: BLE001 - one broken package must not hide the others
            PACKAGE_FAILURES.append((dist, "%s: %s" % (type(exc).__name__, exc)))
    PACKAGE_TOOLS = found
    return found


def package_tool_definition(tool_id):
    """The definition of `tool_id`, or of the tool that lists it among its
    `deprecated_tools` (tools_manager.py, ToolLoader.load_package_tool)."""
    tools = package_tools()
    if tool_id in tools:
        return tools[tool_id]
    for definition, dist in tools.values():
        if tool_id in (definition.get("deprecated_tools") or ()):
            return definition, dist
    return None


def package_of(tool_id):
    """The package a missing tool id most likely comes from, to name in the error."""
    if tool_id.startswith("promptflow.tools."):
        return "promptflow-tools"
    return tool_id.split(".", 1)[0]


PACKAGE_MODULES = {}


def load_package_tool(tool_id):
    """A package tool as promptflow loads it (tools_manager.py,
    BuiltinsManager._load_package_tool): the definition's `module`, then its
    `class_name` (a ToolProvider built from the node's `__init__` inputs)
    and `function`. The errors name what to install; flow-ci puts the node
    in front of them."""
    if tool_id in PACKAGE_MODULES:
        return PACKAGE_MODULES[tool_id]
    found = package_tool_definition(tool_id)
    if found is None:
        failed = "".join(" (%s's tools did not load: %s)" % f for f in PACKAGE_FAILURES)
        raise PackageToolNotFoundError(
            "uses package tool `%s` from `%s`, which is not installed in the flow's python; add it to requirements.txt%s"
            % (tool_id, package_of(tool_id), failed)
        )
    definition, dist = found
    try:
        module = importlib.import_module(definition["module"])
    except ImportError as exc:
        if FLAVOR != "shim" or not (exc.name or "").startswith("promptflow"):
            raise
        raise PackageToolNotFoundError(
            "uses package tool `%s` from `%s`, which needs promptflow (%s), not installed in the flow's python; add promptflow to requirements.txt"
            % (tool_id, dist, exc)
        ) from None
    class_name = definition.get("class_name")
    if class_name:
        cls = getattr(module, class_name)
        tool = Tool(getattr(cls, definition["function"]), cls)
    else:
        tool = Tool(getattr(module, definition["function"]))
    tool.name = definition.get("name") or tool.name
    PACKAGE_MODULES[tool_id] = tool
    return tool


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


# Images (promptflow-core _utils/multimedia_utils.py, BasicMultimediaProcessor):
# a flow input of type image, a one-key dict {"data:image/<ext>;path|base64|url":
# value} anywhere in a list or object input or in another node's output, and a
# literal input of a parameter annotated Image become promptflow's Image. An
# Image a node returns goes back to flow-ci as its base64 dict, which flow-ci
# persists where promptflow persists images.
IMAGE_KEY = re.compile(r"^data:image/(.*);(path|base64|url)$")  # MIME_PATTERN
BASE64_PREFIX = re.compile(r"^data:image/(.*);base64")
BASE64_BODY = re.compile(r"^([A-Za-z0-9+/]{4})*(([A-Za-z0-9+/]{2})*(==|[A-Za-z0-9+/]=)?)?$")


class InvalidImageInput(Exception):
    pass


class LoadMultimediaDataError(Exception):
    pass


def image_class():
    from promptflow.contracts.multimedia import Image

    return Image


# The flow's message_format is openai-vision (set per request): images are
# OpenAI content parts instead (OpenaiVisionMultimediaProcessor).
VISION = False


def is_image_dict(value):
    if VISION:
        return is_vision_image_dict(value)
    return isinstance(value, dict) and len(value) == 1 and IMAGE_KEY.match(next(iter(value))) is not None


def is_vision_image_dict(value):
    """OpenaiVisionMultimediaProcessor.is_multimedia_dict."""
    if not isinstance(value, dict) or len(value) != 2 or "type" not in value:
        return False
    kind = value["type"]
    if not isinstance(kind, str) or not isinstance(value.get(kind), dict):
        return False
    return (kind == "image_url" and "url" in value[kind]) or (kind == "image_file" and "path" in value[kind])


def is_text_dict(value):
    """TextProcessor.is_text_dict: {"type": "text", "text": str | {"value": str, ...}}."""
    if not isinstance(value, dict) or len(value) != 2 or value.get("type") != "text" or "text" not in value:
        return False
    text = value["text"]
    return isinstance(text, str) or (isinstance(text, dict) and isinstance(text.get("value"), str))


def vision_image_from_dict(value):
    """OpenaiVisionMultimediaProcessor._create_image_from_dict: no mime type
    is given, so Image guesses it from the bytes."""
    if value["type"] == "image_url":
        url = value["image_url"]["url"]
        if is_base64(url):
            return image_from_base64(url)
        if is_url(url):
            return image_from_url(url)
        raise InvalidImageInput("Invalid image url: %s. Should be a valid url or base64 string." % url)
    return image_from_file(value["image_file"]["path"])


def is_base64(value):
    """ImageProcessor.is_base64."""
    parts = value.split(",")
    if len(parts) == 2:
        return bool(BASE64_PREFIX.match(parts[0]) and BASE64_BODY.match(parts[1]))
    return len(parts) == 1 and BASE64_BODY.match(value) is not None


def is_url(value):
    from urllib.parse import urlparse

    try:
        parsed = urlparse(value)
        return all([parsed.scheme, parsed.netloc])
    except ValueError:
        return False


def image_from_file(path, mime_type=None):
    with open(path, "rb") as f:
        return image_class()(f.read(), mime_type=mime_type)


def image_from_base64(value, mime_type=None):
    import base64

    return image_class()(base64.b64decode(value.split(",")[-1]), mime_type=mime_type)


def image_from_url(url, mime_type=None):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url) as resp:  # noqa: S310 - the flow's own image URL
            return image_class()(resp.read(), mime_type=mime_type, source_url=url)
    except urllib.error.HTTPError as exc:
        raise InvalidImageInput(
            "Failed to fetch image from URL: %s. Error code: %s. Error message: %s." % (url, exc.code, exc.read().decode("utf-8", "replace"))
        ) from None


def image_from_dict(value):
    """BasicMultimediaProcessor._create_image_from_dict."""
    if VISION:
        return vision_image_from_dict(value)
    key, data = next(iter(value.items()))
    fmt, resource = IMAGE_KEY.match(key).groups()
    mime_type = "image/%s" % fmt
    if resource == "path":
        return image_from_file(data, mime_type)
    if resource == "base64":
        if not is_base64(data):
            raise InvalidImageInput("Invalid base64 image: %s." % data)
        return image_from_base64(data, mime_type)
    return image_from_url(data, mime_type)


def create_image(value):
    """MultimediaProcessor.create_image."""
    if isinstance(value, bytes) and hasattr(value, "_mime_type"):
        return value
    if isinstance(value, dict):
        if is_image_dict(value):
            return image_from_dict(value)
        raise InvalidImageInput(
            "Invalid image input format. The image input should be a dictionary like: "
            "{data:image/<image_type>;[path|base64|url]: <image_data>}."
        )
    if isinstance(value, str):
        if not value:
            raise InvalidImageInput("The image input should not be empty.")
        if is_base64(value):
            return image_from_base64(value)
        if is_url(value):
            return image_from_url(value)
        return image_from_file(value)
    raise InvalidImageInput(
        "Unsupported image input type: %s. The image inputs should be a string or a dictionary." % type(value)
    )


def load_images(value):
    """load_multimedia_data_recursively: image dicts in lists and dicts."""
    if isinstance(value, list):
        return [load_images(v) for v in value]
    if isinstance(value, dict):
        if is_image_dict(value):
            return image_from_dict(value)
        if VISION and is_text_dict(value):
            from promptflow.contracts.multimedia import Text

            return Text.deserialize(value)
        return {k: load_images(v) for k, v in value.items()}
    return value


def image_input(key, value, error=LoadMultimediaDataError):
    """A flow input of type image (a list of them for an aggregation node),
    failing as load_multimedia_data fails."""
    try:
        if isinstance(value, list):
            return [create_image(v) for v in value]
        return create_image(value)
    except Exception as exc:  # noqa: BLE001 - every failure names the input
        raise error("Failed to load image for input '%s': (%s) %s" % (key, type(exc).__name__, exc)) from None


def image_to_json(image):
    """An Image as flow-ci carries it: its URL when it came from one (as
    `_generate_image_url_reference`), else its bytes in base64
    (`convert_multimedia_data_to_base64_dict`), in the flow's format."""
    if VISION:
        url = image.source_url or image.to_base64(with_type=True)
        return {"type": "image_url", "image_url": {"url": url}}
    if image.source_url:
        return {"data:%s;url" % image._mime_type: image.source_url}
    return {"data:%s;base64" % image._mime_type: image.to_base64()}


# promptflow's names for why a node's tool cannot be resolved (executor/_errors.py).
class InputTypeMismatch(ToolLoadError):
    pass


class MissingRequiredInputs(ToolLoadError):
    pass


class NodeInputValidationError(ToolLoadError):
    pass


class PackageToolNotFoundError(ToolLoadError):
    pass


def value_type(annotation):
    """promptflow's ValueType for a parameter annotation (first of a Union)."""
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and getattr(annotation, "__args__", None):
        if str(origin) == "typing.Union":
            annotation = annotation.__args__[0]
        else:
            annotation = origin
    if getattr(annotation, "__name__", None) == "Image" and isinstance(annotation, type) and issubclass(annotation, bytes):
        return "image"
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


def connection_params(tool):
    return [name for name, p in tool.params().items() if connection_class_name(p.annotation)]


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
    strong = custom_strong_type(annotation)
    if strong is not None and spec["type"] == "CustomConnection":
        # _tool_resolver.py, _convert_to_custom_strong_type_connection_value:
        # the parameter's own class, from the custom connection's values (no name).
        return strong(configs=conn.configs, secrets=conn.secrets)
    return conn


def custom_strong_type(annotation):
    """The CustomStrongTypeConnection subclass a parameter is annotated with, if any."""
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) is not None and args:
        annotation = args[0]
    bases = getattr(annotation, "__mro__", ())[1:]
    return annotation if any(b.__name__ == "CustomStrongTypeConnection" for b in bases) else None


def build_kwargs(params, req):
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
            if vtype == "image":
                value = image_input(key, value, NodeInputValidationError)
            else:
                # _convert_literal_input_types: parsed, then images loaded.
                value = load_images(parse_literal(value, vtype) if vtype else value)
        elif key in req.get("images", ()):
            value = image_input(key, value)
        else:
            value = load_images(value)
        if key in req.get("bypassed", ()):
            param = params.get(key)
            if param is not None and param.default is not inspect.Parameter.empty:
                continue
            value = None
        kwargs[key] = value
    return kwargs


def init_kwargs(tool, req, kwargs):
    """The `__init__` arguments of a class tool, taken out of `kwargs`, as
    tools_manager.py, BuiltinsManager._load_tool_from_module takes them:
    node inputs named like `__init__` parameters, which must be literals
    (InputTypeMismatch), every required one given (MissingRequiredInputs).
    The rest of the inputs go to the `@tool` method (_tool_resolver.py,
    _remove_init_args)."""
    given = {}
    literals = req.get("literals", ())
    for key in list(kwargs):
        if key not in tool.init_params:
            continue
        value = kwargs.pop(key)
        if key not in literals:
            # At load, a reference input's value is its text, e.g. `${inputs.x}`.
            raise InputTypeMismatch(
                "Invalid input for '%s': Initialization input '%s' requires a literal value, but %s was received."
                % (tool.name, key, value)
            )
        given[key] = value
    required = [k for k, p in tool.init_params.items() if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    missing = [k for k in required if k not in given]
    if missing:
        raise MissingRequiredInputs("Required inputs %s are not provided for tool '%s'." % (missing, tool.name))
    return given


def bound_tool(tool, req, kwargs):
    """The callable for a node: the function, or the method of the class
    built once per worker and set of `__init__` arguments (promptflow builds
    it once when it resolves the node)."""
    if tool.cls is None:
        return tool.func
    init = init_kwargs(tool, req, kwargs)
    # Keyed by the node's inputs as written (a connection by its name), not
    # by the objects built from them, which are new on every call.
    raw = req.get("kwargs", {})
    key = json.dumps({k: raw.get(k) for k in init}, sort_keys=True, default=str)
    if key not in tool.instances:
        try:
            tool.instances[key] = tool.cls(**init)
        except Exception as exc:
            raise ToolLoadError(
                "Failed to load package tool '%s': (%s) %s" % (tool.name, type(exc).__name__, exc)
            ) from exc
    return getattr(tool.instances[key], tool.func.__name__)


def preload(req):
    """Imports a node's file and finds its tool; a class tool is checked and
    built now (as promptflow builds it before the first line) unless an
    `__init__` parameter is a connection, which only calls bind."""
    tool = load_node_tool(req)
    params = tool.params()
    # _tool_resolver.py, _convert_literal_input_types: literal inputs are
    # converted to their parameter's type when the node is resolved.
    literals = {k: v for k, v in req.get("kwargs", {}).items() if k in req.get("literals", ())}
    for key, value in literals.items():
        param = params.get(key)
        vtype = value_type(param.annotation) if param is not None else None
        if vtype == "image" and value is not None and value != "":
            image_input(key, value, NodeInputValidationError)
        elif vtype and value is not None and value != "":
            try:
                parse_literal(value, vtype)
            except Exception:  # noqa: BLE001 - any parse failure
                raise NodeInputValidationError(
                    "Input '%s' of value '%s' is not type %s." % (key, value, vtype)
                ) from None
    if req.get("prompt_template") is not None:
        prompt_param(tool)
    if tool.cls is not None:
        kwargs = {k: v for k, v in req.get("kwargs", {}).items() if k in tool.init_params}
        if not any(connection_class_name(params[k].annotation) for k in tool.init_params):
            bound_tool(tool, req, build_kwargs(params, dict(req, kwargs=kwargs)))
        else:
            init_kwargs(tool, req, kwargs)
    output = {"name": tool.func.__name__, "connection_params": connection_params(tool)}
    return {"ok": True, "output": output, "metrics": {}}


def join_async(iterator):
    async def collect():
        return "".join([str(item) async for item in iterator])

    return asyncio.run(collect())


def to_json(value):
    """A node's output as JSON. Iterators (generators, async generators) are
    joined as promptflow joins a flow output that is one
    (flow_executor.py, _stringify_generator_output and
    _stringify_generator_output_async: "".join(str(item) ...)), wherever they
    sit in the output, and consumed once."""
    if isinstance(value, collections.abc.AsyncIterator):
        return join_async(value)
    if isinstance(value, collections.abc.Iterator):
        return "".join(str(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump") and not isinstance(value, type):  # pydantic models, which MAF uses
        return value.model_dump(mode="json")
    return value


def take_streams(value, path, streams, forward=None):
    """The output with every generator in it (at the top or under dict keys)
    replaced by its items joined, each generator's items recorded in
    `streams` with its key path: `serve` sends them as events when asked for
    a stream, as promptflow's serving sends a flow output that is a generator
    (core/_serving/response_creator.py, ResponseCreator.generate).
    `forward(path, item)`, when given, gets each item as it is yielded."""
    forward = forward or (lambda path, item: None)
    if isinstance(value, collections.abc.AsyncIterator):

        async def collect():
            items = []
            async for item in value:
                forward(path, item)
                items.append(item)
            return items

        items = asyncio.run(collect())
    elif isinstance(value, collections.abc.Iterator):
        items = []
        for item in value:
            forward(path, item)
            items.append(item)
    elif isinstance(value, dict):
        return {k: take_streams(v, path + [str(k)], streams, forward) for k, v in value.items()}
    else:
        return value
    streams.append([path, items])
    return "".join(str(item) for item in items)


def generator_paths(value, path):
    """The key paths of the generators in a node's output (at the top or under dict keys)."""
    if isinstance(value, (collections.abc.AsyncIterator, collections.abc.Iterator)):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in generator_paths(v, path + [str(k)])]
    return []


def announce_streams(req, output):
    """For `serve` asked for a stream (`stream` in the request): the
    generators' paths go out at once, before any item, and each item as it
    is yielded, ahead of the call's response, so the client gets the other
    outputs first and every item when the node yields it, as promptflow's
    serving does with the generator it holds (ResponseCreator.generate).
    None when nothing is asked or the output holds no generator."""
    paths = generator_paths(output, []) if req.get("stream") else []
    if not paths:
        return None
    PROTOCOL.write(json.dumps({"generators": paths, "id": req.get("id")}) + "\n")

    def forward(path, item):
        PROTOCOL.write(encode({"item": [path, item], "id": req.get("id")}) + "\n")

    return forward


def encode(value):
    image = image_class()

    def default(obj):
        if isinstance(obj, image):
            return image_to_json(obj)
        converted = to_json(obj)  # once: a second call would find a generator empty
        return str(obj) if converted is obj else converted

    return json.dumps(value, ensure_ascii=False, default=default)


class InvalidCustomLLMTool(ToolLoadError):
    pass


def prompt_param(tool):
    """The parameter a custom_llm node's prompt template goes to: the one
    annotated PromptTemplate (_utils/tool_utils.py,
    get_prompt_param_name_from_func); a tool without one is refused as
    _tool_resolver.py, _integrate_prompt_in_package_node refuses it."""
    for name, param in tool.params().items():
        if getattr(param.annotation, "__name__", None) == "PromptTemplate":
            return name
    raise InvalidCustomLLMTool(
        "Invalid Custom LLM tool %s: function %s is missing a prompt template argument."
        % (tool.name, tool.func.__name__)
    )


def add_prompt(tool, req, kwargs):
    """A custom_llm node's template text as its tool's PromptTemplate argument."""
    if req.get("prompt_template") is None:
        return
    from promptflow.contracts.types import PromptTemplate

    kwargs[prompt_param(tool)] = PromptTemplate(req["prompt_template"])


NAMED_CONNECTIONS = {}  # name -> flow-ci's connection, for tools that look connections up by name


def serve_named_connections(req):
    """flow-ci's connections for a tool that reads pf's local connection
    store by name: promptflow-tools' Open Model LLM reads
    `localConnection/NAME` with PFClient().connections.get (open_model_llm.py,
    CustomConnectionsContainer.get_endpoint_from_local_custom_connection);
    here that lookup returns flow-ci's NAME, checked by the tool's own
    get_endpoint_from_custom_connection."""
    named = req.get("named_connections")
    if not named:
        return
    NAMED_CONNECTIONS.update(named)
    module = sys.modules.get("promptflow.tools.open_model_llm")
    container = getattr(module, "CUSTOM_CONNECTION_CONTAINER", None)
    if container is None or getattr(container, "flow_ci_connections", False):
        return

    def from_flow_ci(name):
        return container.get_endpoint_from_custom_connection(make_connection(None, NAMED_CONNECTIONS[name]))

    container.get_endpoint_from_local_custom_connection = from_flow_ci
    container.flow_ci_connections = True


def call(req):
    global METRICS
    tool = load_node_tool(req)
    kwargs = build_kwargs(tool.params(), req)
    add_prompt(tool, req, kwargs)
    serve_named_connections(req)
    func = bound_tool(tool, req, kwargs)
    METRICS = {} if req.get("aggregation") else None
    try:
        if inspect.iscoroutinefunction(func):
            output = asyncio.run(func(**kwargs))
        else:
            output = func(**kwargs)
        streams = []
        forward = announce_streams(req, output)
        output = to_json(take_streams(output, [], streams, forward))
        if VISION:
            output = serialize_texts(output)
        return {"ok": True, "output": output, "metrics": METRICS or {}, "streams": streams}
    finally:
        METRICS = None


def serialize_texts(value):
    """Text values as their dicts, as openai-vision flows persist them
    (OpenaiVisionMultimediaProcessor.persist_multimedia_data, Text.serialize)."""
    from promptflow.contracts.multimedia import Text

    if isinstance(value, Text):
        return value.serialize()
    if isinstance(value, list):
        return [serialize_texts(v) for v in value]
    if isinstance(value, dict):
        return {k: serialize_texts(v) for k, v in value.items()}
    return value


RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


def error_response(exc, phase):
    """The exception with a traceback of user frames only (no worker or shim)."""
    tb = traceback.TracebackException.from_exception(exc)
    chained = tb
    while chained is not None:  # the causes too: a class tool's failing __init__
        chained.stack = traceback.StackSummary.from_list(
            [f for f in chained.stack if not (f.filename or "").startswith((RUNTIME_DIR, "<frozen"))]
        )
        chained = chained.__cause__ or chained.__context__
    where = None
    if isinstance(exc, SyntaxError) and exc.filename:
        where = [exc.filename, exc.lineno or 1]
    else:
        located = tb
        while located is not None and not located.stack:
            located = located.__cause__ or located.__context__
        if located is not None:
            where = [located.stack[-1].filename, located.stack[-1].lineno]
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


FLAVOR = None  # "promptflow" or "shim", set at start


def main():
    global FLAVOR, VISION
    # Ctrl-C reaches the whole process group; flow-ci decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    FLAVOR = install_promptflow()
    PROTOCOL.write(json.dumps({"ready": True, "promptflow": FLAVOR, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        VISION = bool(req.get("vision"))
        try:
            if req.get("workflow") is not None:
                resp = load_workflow(req) if req.get("op") == "load" else run_workflow(req)
            elif req.get("op") == "load":
                resp = preload(req)
            else:
                resp = call(req)
        except ToolLoadError as exc:
            resp = error_response(exc, "load")
        except (SyntaxError, ImportError) as exc:
            resp = error_response(exc, "load" if resolve(req["file"]) not in FILES else "call")
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
