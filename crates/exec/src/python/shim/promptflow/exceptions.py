"""promptflow.exceptions' classes (promptflow-core 1.18): the message is the
text given, else the format filled with the keyword arguments, else the
class name."""


class PromptflowException(Exception):
    def __init__(self, message="", message_format="", target="Unknown", module=None, privacy_info=None, **kwargs):
        self._inner_exception = kwargs.get("error")
        self._target = target
        self._module = module
        self._message_format = message_format
        self._privacy_info = privacy_info
        self._kwargs = kwargs
        if message:
            self._message = str(message)
        elif message_format:
            self._message = message_format.format(**kwargs)
        else:
            self._message = self.__class__.__name__
        super().__init__(self._message)

    @property
    def message(self):
        return self._message

    @property
    def message_format(self):
        return self._message_format

    @property
    def inner_exception(self):
        return self._inner_exception

    @property
    def target(self):
        return self._target

    def __str__(self):
        return self._message


class UserErrorException(PromptflowException):
    pass


class SystemErrorException(PromptflowException):
    pass


class ValidationException(UserErrorException):
    pass
