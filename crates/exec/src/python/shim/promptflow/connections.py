"""Connection classes with promptflow's attribute names."""


class _Connection:
    TYPE = "Custom"

    def __init__(self, **values):
        self.__dict__.update(values)

    def __getitem__(self, key):
        return self.__dict__[key]

    def get(self, key, default=None):
        return self.__dict__.get(key, default)

    def __contains__(self, key):
        return key in self.__dict__


class AzureOpenAIConnection(_Connection):
    TYPE = "AzureOpenAI"

    def __init__(self, api_key=None, api_base=None, api_type="azure", api_version="2024-02-01", auth_mode="key", name=None, **kwargs):
        super().__init__(api_key=api_key, api_base=api_base, api_type=api_type, api_version=api_version, auth_mode=auth_mode, name=name, **kwargs)


class OpenAIConnection(_Connection):
    TYPE = "OpenAI"

    def __init__(self, api_key=None, organization=None, base_url=None, name=None, **kwargs):
        super().__init__(api_key=api_key, organization=organization, base_url=base_url, name=name, **kwargs)


class CustomConnection(_Connection):
    TYPE = "Custom"

    def __init__(self, configs=None, secrets=None, name=None, **kwargs):
        super().__init__(**(configs or {}), **(secrets or {}))
        self.configs = dict(configs or {})
        self.secrets = dict(secrets or {})
        self.name = name


class ServerlessConnection(_Connection):
    TYPE = "Serverless"

    def __init__(self, api_key=None, api_base=None, name=None, **kwargs):
        super().__init__(api_key=api_key, api_base=api_base, name=name, **kwargs)
