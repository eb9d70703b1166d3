from promptflow.connections import *  # noqa: F401,F403
