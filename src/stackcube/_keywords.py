"""Keyword arguments typed by a ``TypedDict`` (PEP 692 ``**kwargs: Unpack[...]``), checked at run time.

A type checker already refuses an unknown keyword; this refuses it at run time too, as Python does for a named
parameter, so a misspelt keyword never passes silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_keywords", "keywords_of"]


def keywords_of(*typed: Any) -> frozenset[str]:
    """Every key the ``TypedDict`` classes ``typed`` declare (inherited ones included)."""
    names: set[str] = set()
    for kind in typed:
        names |= kind.__required_keys__ | kind.__optional_keys__
    return frozenset(names)


def check_keywords(given: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Raise ``TypeError`` naming ``where`` for a keyword of ``given`` outside ``known``."""
    unknown = [name for name in given if name not in known]
    if unknown:
        msg = (
            f"{where}() got an unexpected keyword argument {unknown[0]!r}; "
            f"it takes {', '.join(sorted(known))} (besides its own parameters)"
        )
        raise TypeError(msg)
