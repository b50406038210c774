"""Exceptions raised on bad user input (files, flags, hparams)."""


class DataError(ValueError):
    """Bad input data; the message names the file (and line) and the problem."""


class ConfigError(ValueError):
    """A bad hparam key, value or flag; the message lists what is allowed."""
