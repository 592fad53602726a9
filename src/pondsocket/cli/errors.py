"""The error every part of the command line raises for a usage mistake."""

from __future__ import annotations


class CLIError(Exception):
    """A usage error: reported as one line on stderr, exit status 2."""
