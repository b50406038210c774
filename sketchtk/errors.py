"""Exceptions raised on bad user input (files, flags, hparams)."""


class DataError(ValueError):
    """Bad input data; the message names the file (and line) and the problem."""


class ConfigError(ValueError):
    """A bad hparam key, value or flag; the message lists what is allowed."""


class RunError(RuntimeError):
    """A run cannot go on (its directory is locked by another process, training diverged)."""


class RunLocked(RunError):
    """Another live process holds the run directory's lock; the message names its PID."""
