"""The one exception type a user sees: its message names the file and the offending id."""


class SmallboxError(Exception):
    """Bad input a user can fix. The CLI prints the message and exits 2, without a traceback."""
