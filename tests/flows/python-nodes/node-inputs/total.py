from promptflow import tool


@tool
def total(values: list, scaled: list, picked: list, label: str) -> dict:
    return {"values": values, "scaled": scaled, "picked": picked, "label": label}
