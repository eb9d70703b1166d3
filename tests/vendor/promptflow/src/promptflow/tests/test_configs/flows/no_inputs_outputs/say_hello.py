from promptflow.core import tool


@tool
def stringify_num():
    print("hello world")
