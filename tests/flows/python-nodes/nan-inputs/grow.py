import math

from promptflow.core import tool


@tool
def grow(x: float):
    return {"values": [x, -math.inf, {"n": math.nan}, 1e308 * 10], "isnan": math.isnan(x), "type": type(x).__name__}
