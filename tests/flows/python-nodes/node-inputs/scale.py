from promptflow import tool


@tool
def scale(n: int, flag: bool) -> dict:
    return {"n": n * 2, "n_type": type(n).__name__, "flag": flag, "flag_type": type(flag).__name__}
