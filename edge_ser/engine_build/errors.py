"""The error every export stage raises when its check fails."""


class ExportError(RuntimeError):
    """An export stage failed its check; the message says which, by how much, and the limit."""
