"""Exceptions that carry a message meant for the user.

The CLI turns any :class:`MetercertError` into one line on stderr and exit code 2
(usage / input / connection problems). Library code raises the most specific
subclass it can; messages never include key material.
"""


class MetercertError(Exception):
    """Base of every error metercert reports to a user as one line."""

    exit_code = 2


class UsageError(MetercertError):
    """Bad arguments or bad input data (hex, lengths, files, YAML)."""


class InputFileError(MetercertError):
    """A file the user named is missing, unreadable or malformed."""


class ConnectionFailed(MetercertError):
    """A target could not be reached or dropped the connection."""
