class PromptTemplate(str):
    pass


class Secret(str):
    pass


class FilePath(str):
    pass
