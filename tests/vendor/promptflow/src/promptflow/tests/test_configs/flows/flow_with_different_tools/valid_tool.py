from promptflow.core import tool


@tool
def build_vector_index():
    print("test")