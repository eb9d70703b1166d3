"""Connection classes as promptflow-core 1.18 defines them
(promptflow/core/_connection.py): values live in `configs` and `secrets`,
strong types expose them as properties, every connection reads by index
(`conn["api_key"]`, so `**conn` works) and lists `keys()`, and a custom
connection also reads its keys as attributes."""
from promptflow.contracts.types import Secret

SCRUBBED_VALUE = "******"  # promptflow/_constants.py, CONNECTION_SCRUBBED_VALUE


class _Connection:
    TYPE = "_NOT_SET"

    def __init__(self, name=None, module="promptflow.connections", configs=None, secrets=None, **kwargs):
        self.name = name
        self.type = self.TYPE
        self.class_name = f"{self.TYPE}Connection"
        self.configs = configs or {}
        self.module = module
        self.secrets = secrets or {}
        self._secrets = {**self.secrets}
        self.expiry_time = kwargs.get("expiry_time", None)
        self.created_date = kwargs.get("created_date", None)
        self.last_modified_date = kwargs.get("last_modified_date", None)

    def keys(self):
        return list(self.configs.keys()) + list(self.secrets.keys())

    def __getitem__(self, item):
        if item in self.secrets:
            return self.secrets[item]
        if item in self.configs:
            return self.configs[item]
        raise KeyError(f"Key {item!r} not found in connection {self.name!r}.")


class _StrongTypeConnection(_Connection):
    @property
    def _has_api_key(self):
        return True

    @property
    def api_key(self):
        return self.secrets.get("api_key", SCRUBBED_VALUE) if self._has_api_key else None

    @api_key.setter
    def api_key(self, value):
        self.secrets["api_key"] = value


def _config_property(key):
    def get(self):
        return self.configs.get(key)

    def set(self, value):
        self.configs[key] = value

    return property(get, set)


class _StrongTypeAADSupportedConnection(_StrongTypeConnection):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._token_provider = None

    @property
    def _has_api_key(self):
        return self.auth_mode == "key"

    @property
    def auth_mode(self):
        return self.configs.get("auth_mode", "key")

    @auth_mode.setter
    def auth_mode(self, value):
        self.configs["auth_mode"] = value


class AzureOpenAIConnection(_StrongTypeAADSupportedConnection):
    TYPE = "AzureOpenAI"

    def __init__(
        self,
        api_base,
        api_key=None,
        api_type="azure",
        api_version="2024-02-01",
        auth_mode="key",
        resource_id=None,
        **kwargs,
    ):
        configs = {
            "api_base": api_base,
            "api_type": api_type,
            "api_version": api_version,
            "auth_mode": auth_mode,
            "resource_id": resource_id,
        }
        secrets = {"api_key": api_key} if auth_mode == "key" else {}
        super().__init__(configs=configs, secrets=secrets, **kwargs)
        self._token_provider = kwargs.get("token_provider")

    api_base = _config_property("api_base")
    api_type = _config_property("api_type")
    api_version = _config_property("api_version")
    resource_id = _config_property("resource_id")


class OpenAIConnection(_StrongTypeConnection):
    TYPE = "OpenAI"

    def __init__(self, api_key, organization=None, base_url=None, **kwargs):
        if base_url in ["", "_"]:
            base_url = None
        super().__init__(
            configs={"organization": organization, "base_url": base_url}, secrets={"api_key": api_key}, **kwargs
        )

    organization = _config_property("organization")
    base_url = _config_property("base_url")


class ServerlessConnection(_StrongTypeConnection):
    TYPE = "Serverless"

    def __init__(self, api_key, api_base, **kwargs):
        super().__init__(secrets={"api_key": api_key}, configs={"api_base": api_base}, **kwargs)

    api_base = _config_property("api_base")


class CustomStrongTypeConnection(_Connection):
    """A subclass annotates its keys (`api_key: Secret`, `api_url: str`);
    they read from and write to `secrets` or `configs`."""

    TYPE = "Custom"

    def __init__(self, secrets, configs=None, **kwargs):
        configs = dict(configs or {})
        custom_type = kwargs.get("custom_type", None)
        custom_module = kwargs.get("module", None)
        if custom_type:
            configs["promptflow.connection.custom_type"] = custom_type
        if custom_module:
            configs["promptflow.connection.module"] = custom_module
        self.kwargs = kwargs
        super().__init__(configs=configs, secrets=secrets, **kwargs)
        self.module = kwargs.get("module", self.__class__.__module__)
        self.custom_type = custom_type or self.__class__.__name__
        self.package = kwargs.get("package", None)
        self.package_version = kwargs.get("package_version", None)

    def __getattribute__(self, item):
        annotations = getattr(super().__getattribute__("__class__"), "__annotations__", {})
        if item in annotations:
            if annotations[item] == Secret:
                return self.secrets[item]
            return self.configs[item]
        return super().__getattribute__(item)

    def __setattr__(self, key, value):
        annotations = getattr(super().__getattribute__("__class__"), "__annotations__", {})
        if key in annotations:
            if annotations[key] == Secret:
                self.secrets[key] = value
            else:
                self.configs[key] = value
        return super().__setattr__(key, value)


class CustomConnection(_Connection):
    TYPE = "Custom"

    def __init__(self, secrets, configs=None, **kwargs):
        super().__init__(secrets=secrets, configs=configs, **kwargs)

    def __getattr__(self, item):
        if item in ("secrets", "configs"):  # copy.deepcopy reaches here before __init__ ran
            return super().__getattribute__(item)
        if item in self.secrets:
            return self.secrets[item]
        if item in self.configs:
            return self.configs[item]
        return super().__getattribute__(item)

    def is_secret(self, item):
        return item in self.secrets
