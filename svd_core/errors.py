"""Errors the user can act on: each message names the bad input and the fix."""


class SvdError(Exception):
    """Base class: the CLI prints `error: <message>` on one line and exits non-zero."""


class ConfigError(SvdError):
    """A config file or override is invalid."""


class InputError(SvdError):
    """An input (file, table, URI, model) cannot be used as given."""


class StorageError(SvdError):
    """An artifact URI cannot be read or written."""
