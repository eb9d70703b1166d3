from promptflow._flow_ci import trace  # noqa: F401


def start_trace(*args, **kwargs):
    return None
