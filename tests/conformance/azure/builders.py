"""The requests Microsoft's own clients build for the calls flow-ci makes.

Reads a JSON list of requests flow-ci sent (as tests/support/fake_aml.rs
recorded them: {"op", "method", "path", "query", "body"}) and prints, for
each, the request that promptflow-azure's or azure-ai-ml's code builds for
the same inputs, offline (nothing is sent):

    {"op", "expected": {"method", "path", "query", "body"} | null, "problems": [..]}

- Path parameters are read back from flow-ci's path by matching it against
  the builder's own URL template; a path that does not match is a problem.
- A body is read into the client's model class and serialized again with
  the client's serializer, as the client's operation method does before it
  calls the builder. A field flow-ci names wrongly is a problem (unknown to
  the model), as is a value of the wrong type and a required field missing.
- api-version is the one azure-ai-ml's MLClient wires each operation to
  (read from a real MLClient, built offline), not a constant of ours.

Sources (promptflow-azure 1.18.5, azure-ai-ml 1.35.2; see scripts/test):
- promptflow/azure/_restclient/flow/operations/_bulk_runs_operations.py:
  build_submit_bulk_run_request, build_cancel_flow_run_request,
  build_get_flow_child_runs_request, build_get_flow_run_log_content_request;
  the body model is models.SubmitBulkRunRequest (msrest).
- promptflow/azure/_restclient/flow/operations/_flows_operations.py
  (`pfazure flow create` / update, FlowOperations): build_create_flow_request
  (body models.CreateFlowRequest), build_update_flow_request
  (models.UpdateFlowRequest), build_get_flow_request, build_list_flows_request.
- promptflow/azure/operations/_async_run_downloader.py:
  AsyncRunDownloader._get_flow_snapshot_urls (`POST content/v2.0{WS}/snapshots/sas`,
  the run's flow snapshot as `pfazure run download` reads it) posts with
  httpx: called with the client captured.
- promptflow/azure/operations/_run_operations.py:
  RunOperations._get_metrics_from_metric_service (lastvalues) and
  _get_run_from_run_history (rundata) post with `requests` (no builder):
  they are called with `requests.post` captured.
- azure/ai/ml/_restclient/arm_ml_service/operations/_operations.py:
  build_workspaces_get_request, build_datastores_{list,get,list_secrets}_request,
  build_model_containers_get_request, build_model_versions_{list,create_or_update}_request,
  build_environment_versions_{get,create_or_update}_request,
  build_online_endpoints_{get,create_or_update,list_keys}_request,
  build_online_deployments_create_or_update_request; body models
  ModelVersion, EnvironmentVersion, OnlineEndpoint, OnlineDeployment.
- azure/ai/ml/operations/_online_endpoint_operations.py:
  OnlineEndpointOperations.invoke (scoring) posts through its requests
  pipeline: called with the pipeline captured.
"""

import inspect
import json
import sys
import tempfile
import typing
import urllib.parse
from unittest import mock

# ---------------------------------------------------------------- helpers


def parse_url(url):
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.unquote(parts.path), query


def body_of(request):
    """The JSON body an azure.core.rest.HttpRequest carries, or None."""
    content = request.content
    if content is None:
        return None
    if isinstance(content, (bytes, bytearray)):
        content = content.decode()
    if isinstance(content, str):
        return json.loads(content) if content else None
    return content


def marker(name):
    return f"QQ{name.replace('_', '')}QQ"


def path_params(builder, path, problems):
    """Path parameters of `builder` read from `path` through its own template."""
    names = [
        p.name
        for p in inspect.signature(builder).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY) and p.default is p.empty
    ]
    args = {n: marker(n) for n in names}
    # Keyword arguments a builder pops without a default (promptflow's
    # build_get_flow_request: experiment_id) are required too.
    for _ in range(5):
        try:
            built = builder(**args)
            break
        except KeyError as missing:
            args[missing.args[0]] = "x"
    template, _ = parse_url(built.url)
    pattern = template
    for n in names:
        pattern = pattern.replace(marker(n), f"(?P<{n}>[^/]+)")
    import re

    found = re.fullmatch(pattern, path)
    if not found:
        problems.append(f"path {path} does not match the builder's {template}")
        return None
    return {n: urllib.parse.unquote(v) for n, v in found.groupdict().items()}


def typed_query(query, known, problems):
    """flow-ci's query parameters as the builder's keyword arguments."""
    kwargs = {}
    for key, value in query.items():
        if key == "api-version":
            continue
        if key not in known:
            problems.append(f"query parameter {key} is not one the builder knows ({sorted(known)})")
            continue
        name, kind = known[key]
        try:
            kwargs[name] = {"int": int, "bool": lambda v: {"true": True, "false": False}[v], "str": str}[kind](value)
        except (KeyError, ValueError):
            problems.append(f"query parameter {key}={value} is not a {kind}")
    return kwargs


def request_json(request):
    path, query = parse_url(request.url)
    return {"method": request.method, "path": path, "query": query, "body": body_of(request)}


# ------------------------------------------------------- promptflow-azure


def pf_builders():
    # The package as pfazure imports it: it fails with an azure-ai-ml too new
    # for it (1.33 dropped the _restclient.v2022_10_01 it imports), and then
    # every promptflow call fails alike instead of only the first.
    import promptflow.azure  # noqa: F401
    from promptflow.azure._restclient.flow.operations import _bulk_runs_operations as ops

    return ops


def msrest_check(model_cls, body, problems, where="body"):
    """Reads `body` into an msrest model exactly (rest keys, case-sensitive)
    and serializes it again with the client's serializer."""
    from promptflow.azure._restclient.flow import models
    from msrest import Deserializer, Serializer

    client_models = {k: v for k, v in vars(models).items() if isinstance(v, type)}
    obj = Deserializer(client_models)(model_cls.__name__, body)
    for err in obj.validate() or []:
        problems.append(f"{where}: {err}")
    known = {a["key"] for a in model_cls._attribute_map.values()}
    for key in body:
        if key not in known:
            problems.append(f"{where}.{key} is no field of {model_cls.__name__}")
    return Serializer(client_models).body(obj, model_cls.__name__)


def pf_flows_call(op, recorded, problems):
    """The studio's flows API (`pfazure flow create`, FlowOperations)."""
    pf_builders()
    from promptflow.azure._restclient.flow.models import CreateFlowRequest, UpdateFlowRequest
    from promptflow.azure._restclient.flow.operations import _flows_operations as ops

    builder, body_model = {
        "flows.create": (ops.build_create_flow_request, CreateFlowRequest),
        "flows.update": (ops.build_update_flow_request, UpdateFlowRequest),
        "flows.get": (ops.build_get_flow_request, None),
        "flows.list": (ops.build_list_flows_request, None),
    }[op]
    params = path_params(builder, recorded["path"], problems)
    if params is None:
        return None
    known = {
        "experimentId": ("experiment_id", "str"),
        "ownedOnly": ("owned_only", "bool"),
        "flowType": ("flow_type", "str"),
        "listViewType": ("list_view_type", "str"),
    }
    kwargs = typed_query(recorded["query"], known, problems)
    if body_model is not None:
        # FlowsOperations.create_flow / update_flow: _serialize.body(body, model), json=_json.
        kwargs["json"] = msrest_check(body_model, recorded["body"], problems)
        kwargs["content_type"] = "application/json"
    return builder(**params, **kwargs)


def pf_snapshot_call(recorded, problems):
    """AsyncRunDownloader._get_flow_snapshot_urls with its httpx client captured."""
    pf_builders()
    import asyncio

    from promptflow.azure.operations._async_run_downloader import AsyncRunDownloader
    from promptflow.azure.operations._run_operations import RunOperations

    path = recorded["path"]
    prefix, ws = path.split("/content/v2.0", 1)
    ws = ws.removesuffix("/snapshots/sas")

    class Offline(RunOperations):
        _run_history_endpoint_url = "http://service" + prefix + "/history/v1.0" + ws

        def __init__(self):
            pass

        def _get_headers(self):
            return {"Authorization": "Bearer token", "Content-Type": "application/json"}

    captured = {}

    class Response:
        status_code = 200

        def json(self):
            return {"name": "", "children": {}}

    class Client:
        async def post(self, url, headers=None, json=None):
            captured.update(url=url, body=json)
            return Response()

    downloader = object.__new__(AsyncRunDownloader)
    downloader.run_ops = Offline()
    snapshot = (recorded["body"] or {}).get("snapshotOrAssetId")
    try:
        asyncio.run(downloader._get_flow_snapshot_urls(Client(), snapshot))
    except Exception:  # parsing the (empty) answer is not what is compared
        pass
    if "url" not in captured:
        problems.append("promptflow made no request")
        return None
    got_path, query = parse_url(captured["url"])
    return {"method": "POST", "path": got_path, "query": query, "body": captured["body"], "exact": True}


def pf_flow_call(op, recorded, problems):
    ops = pf_builders()
    path = recorded["path"]
    if op == "bulk_runs.submit":
        from promptflow.azure._restclient.flow.models import SubmitBulkRunRequest

        params = path_params(ops.build_submit_bulk_run_request, path, problems)
        if params is None:
            return None
        body = msrest_check(SubmitBulkRunRequest, recorded["body"], problems)
        # BulkRunsOperations.submit_bulk_run: content_type application/json, json=_json.
        return ops.build_submit_bulk_run_request(**params, content_type="application/json", json=body)
    builder, known = {
        "bulk_runs.cancel": (ops.build_cancel_flow_run_request, {}),
        "bulk_runs.log_content": (ops.build_get_flow_run_log_content_request, {}),
        "bulk_runs.child_runs": (
            ops.build_get_flow_child_runs_request,
            {"startIndex": ("start_index", "int"), "endIndex": ("end_index", "int"), "index": ("index", "int")},
        ),
    }[op]
    params = path_params(builder, path, problems)
    if params is None:
        return None
    return builder(**params, **typed_query(recorded["query"], known, problems))


def pf_requests_call(op, recorded, problems):
    """RunOperations' own `requests.post` calls, made with the post captured.
    The body is promptflow's literal payload: flow-ci's must equal it (exact)."""
    pf_builders()
    from promptflow.azure.operations._run_operations import RunOperations

    path = recorded["path"]
    service = "/history/v1.0"
    prefix = path.split(service)[0] if service in path else path.split("/metric/v2.0")[0]
    rest = path.split("/workspaces/", 1)
    if len(rest) != 2:
        problems.append(f"{path} names no workspace")
        return None
    ws = "/subscriptions/" + path.split("/subscriptions/", 1)[1].split("/workspaces/")[0] + "/workspaces/" + rest[1].split("/")[0]

    class Offline(RunOperations):
        _run_history_endpoint_url = "http://service" + prefix + service + ws

        def __init__(self):
            pass

        def _get_headers(self):
            return {"Authorization": "Bearer token", "Content-Type": "application/json"}

    captured = {}

    class Response:
        status_code = 200

        def json(self):
            return {"value": []} if "lastvalues" in captured["url"] else {"runMetadata": {}}

    def post(url, headers=None, json=None):
        captured.update(url=url, body=json)
        return Response()

    with mock.patch("promptflow.azure.operations._run_operations.requests.post", post):
        if op == "metric.lastvalues":
            run_id = path.rsplit("/runs/", 1)[-1].removesuffix("/lastvalues")
            Offline()._get_metrics_from_metric_service(urllib.parse.unquote(run_id))
        else:
            run_id = (recorded["body"] or {}).get("runId")
            try:
                Offline()._get_run_from_run_history(run_id, original_form=True)
            except Exception:  # the answer's shape, not the request, is what fails here
                pass
    if "url" not in captured:
        problems.append("promptflow made no request")
        return None
    got_path, query = parse_url(captured["url"])
    return {"method": "POST", "path": got_path, "query": query, "body": captured["body"], "exact": True}


# ----------------------------------------------------------- azure-ai-ml


_ML = None


def ml_client():
    """A real MLClient, built offline: its operations know their api-versions."""
    global _ML
    if _ML is None:
        from azure.ai.ml import MLClient
        from azure.core.credentials import AccessToken

        class Credential:
            def get_token(self, *scopes, **kwargs):
                return AccessToken("offline", 2**40)

        _ML = MLClient(Credential(), "sub", "rg", "ws")
    return _ML


def api_version(op):
    """The api-version azure-ai-ml 1.35's MLClient uses for `op` (_ml_client.py
    hands each *Operations class its own versioned service client)."""
    ml = ml_client()
    owner = {
        "workspaces": ml.workspaces._operation,
        "datastores": ml.datastores._operation,
        "model_containers": ml.models._model_container_operation,
        "model_versions": ml.models._model_versions_operation,
        "environment_versions": ml.environments._version_operations,
        "online_endpoints": ml.online_endpoints._online_operation,
        "online_deployments": ml.online_deployments._online_deployment,
    }[op.split(".")[0]]
    return owner._config.api_version


def hints(cls):
    from azure.ai.ml._restclient.arm_ml_service import models as _models

    module = sys.modules[cls.__module__]
    names = dict(vars(module))
    names["_models"] = _models
    out = {}
    for klass in reversed(cls.__mro__):
        for attr in getattr(klass, "__annotations__", {}):
            try:
                out[attr] = typing.get_type_hints(klass, globalns=names)[attr]
            except Exception:
                pass
    return out


def primitive(hint):
    """str/int/bool/float for a (possibly Optional / Literal / enum-union) hint."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is typing.Union:
        kinds = {primitive(a) for a in args}
        kinds.discard(None)
        return kinds.pop() if len(kinds) == 1 else None
    if origin is typing.Literal:
        # Literal[SomeEnum.MEMBER]: the enum is a str (or int) subclass.
        return primitive(type(args[0])) if args else None
    if isinstance(hint, type):
        for kind in (bool, int, float, str):
            if issubclass(hint, kind):
                return kind
    return None


def is_optional(hint):
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


def model_check(obj, raw, problems, where):
    """Every key flow-ci sent is a field of the model, of the right type;
    every required field (non-optional, writable) is there."""
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import Model, _is_readonly

    cls = type(obj)
    fields = {rf._rest_name: (attr, rf) for attr, rf in cls._attr_to_rest_field.items()}
    types = hints(cls)
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"{where}.{key} is no field of {cls.__name__}")
            continue
        attr, rf = fields[key]
        typed = getattr(obj, attr)
        hint = types.get(attr)
        kind = primitive(hint) if hint is not None else None
        if isinstance(typed, Model) and isinstance(value, dict):
            model_check(typed, value, problems, f"{where}.{key}")
        elif isinstance(typed, dict) and isinstance(value, dict):
            for k, v in typed.items():
                if isinstance(v, Model) and isinstance(value.get(k), dict):
                    model_check(v, value[k], problems, f"{where}.{key}.{k}")
            inner = typing.get_args(typing.get_args(hint)[0] if is_optional(hint) else hint)
            value_kind = primitive(inner[1]) if len(inner) == 2 else None
            for k, v in value.items():
                if value_kind is not None and not matches(v, value_kind):
                    problems.append(f"{where}.{key}.{k} is {json.dumps(v)}, not a {value_kind.__name__}")
        elif kind is not None and not matches(value, kind):
            problems.append(f"{where}.{key} is {json.dumps(value)}, not a {kind.__name__}")
    for rest_name, (attr, rf) in fields.items():
        hint = types.get(attr)
        if hint is not None and not is_optional(hint) and not _is_readonly(rf) and rest_name not in raw:
            problems.append(f"{where}.{rest_name} is required by {cls.__name__} and missing")


def matches(value, kind):
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def ml_call(op, recorded, problems):
    from azure.ai.ml._restclient.arm_ml_service import models
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder, _deserialize
    from azure.ai.ml._restclient.arm_ml_service.operations import _operations as ops

    builder = getattr(ops, f"build_{op.replace('.', '_')}_request")
    params = path_params(builder, recorded["path"], problems)
    if params is None:
        return None
    known = {
        "datastores.list": {
            "count": ("count", "int"),
            "isDefault": ("is_default", "bool"),
            "orderByAsc": ("order_by_asc", "bool"),
            "orderBy": ("order_by", "str"),
            "$skip": ("skip", "str"),
            "searchText": ("search_text", "str"),
        },
        "model_versions.list": {
            "$skip": ("skip", "str"),
            "$orderBy": ("order_by", "str"),
            "$top": ("top", "int"),
            "version": ("version", "str"),
            "tags": ("tags", "str"),
            "listViewType": ("list_view_type", "str"),
        },
    }.get(op, {})
    kwargs = typed_query(recorded["query"], known, problems)
    body_model = {
        "model_versions.create_or_update": models.ModelVersion,
        "environment_versions.create_or_update": models.EnvironmentVersion,
        "online_endpoints.create_or_update": models.OnlineEndpoint,
        "online_deployments.create_or_update": models.OnlineDeployment,
    }.get(op)
    if body_model is not None:
        raw = recorded["body"]
        if not isinstance(raw, dict):
            problems.append(f"the body is not an object: {raw!r}")
            return None
        obj = _deserialize(body_model, raw)
        model_check(obj, raw, problems, "body")
        # The operation methods: json.dumps(body, cls=SdkJSONEncoder, exclude_readonly=True).
        kwargs["content"] = json.dumps(obj, cls=SdkJSONEncoder, exclude_readonly=True)
        kwargs["content_type"] = "application/json"
    return builder(**params, api_version=api_version(op), **kwargs)


def score_call(recorded, problems):
    """OnlineEndpointOperations.invoke with its endpoint, key and pipeline captured."""
    ops = ml_client().online_endpoints
    headers = {k.lower(): v for k, v in recorded.get("headers", {}).items()}
    deployment = headers.get("azureml-model-deployment")
    endpoint = mock.Mock()
    endpoint.properties.scoring_uri = "http://scoring" + recorded["path"]
    endpoint.properties.auth_mode = "key"
    from azure.ai.ml._restclient.arm_ml_service.models import EndpointAuthKeys

    captured = {}

    def post(url, json=None, headers=None):
        captured.update(url=url, body=json, headers=dict(headers or {}))
        response = mock.Mock(status_code=200)
        response.text.return_value = "{}"
        return response

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(recorded["body"], f)
    with (
        mock.patch.object(ops, "_online_operation") as online,
        mock.patch.object(ops, "_validate_deployment_name"),
        mock.patch.object(
            ops, "_get_online_credentials", return_value=EndpointAuthKeys(primary_key="KEY", secondary_key="other")
        ),
        mock.patch.object(ops, "_requests_pipeline") as pipeline,
        mock.patch("azure.ai.ml.operations._online_endpoint_operations.validate_response"),
    ):
        online.get.return_value = endpoint
        pipeline.post.side_effect = post
        ops.invoke(endpoint_name="e", request_file=f.name, deployment_name=deployment)
    path, query = parse_url(captured["url"])
    return {
        "method": "POST",
        "path": path,
        "query": query,
        "body": captured["body"],
        "headers": {k.lower(): v for k, v in captured["headers"].items() if k.lower() != "authorization"},
    }


# ------------------------------------------------------------------ main


def expected(recorded, problems):
    op = recorded["op"]
    if op.startswith("bulk_runs."):
        return pf_flow_call(op, recorded, problems)
    if op.startswith("flows."):
        return pf_flows_call(op, recorded, problems)
    if op == "content.snapshots_sas":
        return pf_snapshot_call(recorded, problems)
    if op in ("metric.lastvalues", "history.rundata"):
        return pf_requests_call(op, recorded, problems)
    if op == "score":
        return score_call(recorded, problems)
    return ml_call(op, recorded, problems)


def main():
    out = []
    for recorded in json.load(sys.stdin):
        problems = []
        try:
            built = expected(recorded, problems)
        except Exception as e:  # a body the client cannot even read is a finding, not a crash
            problems.append(f"the client could not build the request: {type(e).__name__}: {e}")
            built = None
        if built is not None and not isinstance(built, dict):
            built = request_json(built)
        out.append({"op": recorded["op"], "expected": built, "problems": problems})
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
