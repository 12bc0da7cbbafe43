"""The error family a user can meet: one module, so callers catch one name."""


class UserError(ValueError):
    """Bad input from a user (a flag, a file, a name). The CLI prints it as one line, exit 2."""
