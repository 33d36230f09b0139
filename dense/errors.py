"""The one exception type a user can cause; the CLI prints it as a single line."""


class DenseError(Exception):
    """A problem with the user's input (config, paths, files): reported without a traceback."""
