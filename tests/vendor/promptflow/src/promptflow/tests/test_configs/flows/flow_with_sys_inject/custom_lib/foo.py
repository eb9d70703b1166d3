def foo(param: str) -> str:
    return f"{param} from func foo"
