import math

from promptflow.core import log_metric, tool


@tool
def count(rows: list):
    log_metric("nan_inputs", sum(1 for r in rows if r["isnan"]))
    log_metric("lowest", -math.inf)
    log_metric("nan", math.nan)
    return len(rows)
