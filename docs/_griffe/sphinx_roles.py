"""A griffe extension for the docs build (mkdocs.yml loads it): the docstrings use Sphinx
roles (:class:`Lobby`, :meth:`~pondsocket.PondSocket.run`), which Markdown would show
as written; this turns each into a code span (`Lobby`, `run`), the last part of the name
only when it starts with ``~``, as Sphinx does."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
