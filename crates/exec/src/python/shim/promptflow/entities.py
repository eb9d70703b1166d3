from promptflow.connections import *  # noqa: F401,F403
from promptflow._core.tool import DynamicList, InputSetting  # noqa: F401
