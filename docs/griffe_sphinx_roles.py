"""A griffe extension for the API reference: Sphinx roles in docstrings become code or links.

The docstrings cite other objects the Sphinx way (``:func:`make_vec```,
``:class:`~moc_envs.errors.WorkerError```), which mkdocstrings would print as they are.
This extension rewrites each role before rendering: a dotted target becomes an optional
cross-reference (a link where the API reference documents the target, plain code where it
does not, for example a Gymnasium class), a bare name becomes code. ``~`` shows the last
component only, as in Sphinx. Listed in mkdocs.yml under the Python handler's extensions.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["SphinxRoles", "convert_roles"]

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(~?)([^`<>]+)`")


def _replace(match: re.Match[str]) -> str:
    short, target = match.group(1) == "~", match.group(2).strip()
    title = target.rsplit(".", 1)[-1] if short else target
    if "." not in target:
        return f"`{title}`"
    return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'


def convert_roles(text: str) -> str:
    """``text`` with every Sphinx cross-reference role turned into Markdown code or a link."""
    return _ROLE.sub(_replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring griffe loads (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = convert_roles(obj.docstring.value)
