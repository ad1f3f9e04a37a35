"""The one exception type that the CLI and the server turn into a one-line message."""


class TvscriptError(Exception):
    """A problem with the user's input or files, explained in one line."""
