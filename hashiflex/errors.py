"""User-facing errors: the CLI prints the message on one line and exits with code 2."""


class UserError(Exception):
    """Bad input or environment; the message says what to do."""
