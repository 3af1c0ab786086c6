"""The one exception type for bad user input (files, columns, paths, config values).

Raised anywhere (driver or inside an actor); the CLI unwraps it from Ray's task errors and prints
its message alone, without a traceback, and exits non-zero. Messages name the file, row or key and
say what to do.
"""


class InputError(ValueError):
    """Bad input the user can fix: the message names what is wrong and where."""
