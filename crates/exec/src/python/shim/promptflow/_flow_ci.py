"""The shim's implementation: @tool marks functions like promptflow does
(an `__tool` attribute), log_metric forwards to the worker's metric sink."""
import functools
import inspect

_SINK = None


def set_metric_sink(sink):
    global _SINK
    _SINK = sink


def log_metric(key, value, variant_id=None):
    if _SINK is not None:
        _SINK(key, value, variant_id)


def tool(func=None, *, name=None, description=None, type=None, input_settings=None, streaming_option_parameter=None, **kwargs):
    def decorate(f):
        if inspect.iscoroutinefunction(f):

            @functools.wraps(f)
            async def wrapper(*args, **kw):
                return await f(*args, **kw)

        else:

            @functools.wraps(f)
            def wrapper(*args, **kw):
                return f(*args, **kw)

        setattr(wrapper, "__tool", None)
        wrapper.__name = name
        wrapper.__description = description
        return wrapper

    return decorate(func) if func is not None else decorate


def trace(func=None, **kwargs):
    return func if func is not None else (lambda f: f)
