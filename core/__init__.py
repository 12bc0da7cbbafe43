"""ActLab core: UI-free. Nothing under core/ imports streamlit."""


class UserError(ValueError):
    """Bad input from a user (a flag, a file, a name). The CLI prints it as one line, exit 2."""
