def say_hello():
    return "Hello World!"