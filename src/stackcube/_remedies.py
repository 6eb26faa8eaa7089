"""The remedies errors name, each said for Python and for the command line (:class:`stackcube.errors.Remedy`).

One function per remedy, so that what a message tells users to run is written once and is a call that works: a
source replaced in place is re-indexed by a refresh that compares ETags (a plain refresh asks the catalog, which
did not change), not by a plain refresh.
"""

from __future__ import annotations

import shlex

from stackcube.errors import Remedy

__all__ = [
    "allow_prefixes",
    "build",
    "drop_vanished",
    "give_catalog",
    "install_extra",
    "reindex",
    "stac_metadata_off",
]


def _names(repo: str | None) -> tuple[str, str]:
    """How the remedy names the cube: its path or URL (quoted for Python and for the shell), or, for a cube opened
    from an Icechunk Storage or Repository, which has no name to type, ``repo`` and ``REPO``."""
    if repo is None:
        return "repo", "REPO"
    return repr(repo), shlex.quote(repo)


def reindex(repo: str | None) -> Remedy:
    """For a source replaced since it was indexed: ask every source for its ETag and re-index the changed ones (a
    plain refresh would not: it asks the catalog, which did not change)."""
    py, sh = _names(repo)
    return Remedy(
        python=(
            f"re-index it with stackcube.refresh_cube({py}, check_etags=True) "
            f"(or stackcube.verify_cube({py}, fix=True))"
        ),
        cli=f"re-index it with: stackcube refresh --check-etags {sh} (or stackcube verify --fix {sh})",
    )


def drop_vanished(repo: str | None) -> Remedy:
    """For a source deleted or moved since it was indexed: a refresh that asks every source reads the vanished ones
    again, so those the catalog moved are indexed where they are, and those still missing are left out (skipped
    as failed); items the catalog no longer lists go with ``remove``."""
    py, sh = _names(repo)
    return Remedy(
        python=(
            f"stackcube.refresh_cube({py}, check_etags=True, on_error='skip') indexes it where the catalog now "
            "points, or leaves it out (remove=True also drops the items the catalog no longer lists)"
        ),
        cli=(
            f"stackcube refresh --check-etags --skip-failed {sh} indexes it where the catalog now points, or leaves "
            "it out (--remove also drops the items the catalog no longer lists)"
        ),
    )


def build(repo: str | None) -> Remedy:
    """For a repository that does not exist: build a cube there."""
    py, sh = _names(repo)
    return Remedy(
        python=f"build one with stackcube.build_cube(catalog, repo={py})",
        cli=f"build one with: stackcube build CATALOG --repo {sh}",
    )


def give_catalog(repo: str | None, catalog: str) -> Remedy:
    """For a catalog that refuses a refresh's search for want of credentials (HTTP 401 or 403): pass them again (a
    cube stores neither the catalog URL's credential parameters nor its headers)."""
    py, sh = _names(repo)
    url, shown = repr(catalog), shlex.quote(catalog)
    where = "its key as a query parameter (the Planetary Computer's is subscription-key)"
    return Remedy(
        python=(
            f"a cube never stores the catalog's credentials: pass them again, as stackcube.refresh_cube({py}, "
            f"catalog=URL) with URL {url} and {where}, or with headers={{...}}"
        ),
        cli=(
            f"a cube never stores the catalog's credentials: pass them again, as stackcube refresh --catalog URL {sh} "
            f"with URL {shown} and {where}, or with --header 'NAME: VALUE'"
        ),
    )


def allow_prefixes(prefixes: list[str]) -> Remedy:
    """For a cube that reads outside the prefixes allowed: allow them, if the cube is trusted."""
    return Remedy(
        python=f"add them to allow= only if you trust this cube (allow=[..., {', '.join(map(repr, prefixes))}])",
        cli=f"add them to --allow only if you trust this cube (--allow ... {' '.join(map(shlex.quote, prefixes))})",
    )


def stac_metadata_off() -> Remedy:
    """For band metadata in a catalog that cannot be right: fix the catalog, build with the files' own, or leave
    those sources out (what a refresh, whose cube keeps the options it was built with, can do)."""
    return Remedy(
        python=(
            "fix the catalog, or build with stac_metadata=False (the files' own nodata, scale and offset), or pass "
            "on_error='skip' to leave those sources out"
        ),
        cli=(
            "fix the catalog, or build with --no-stac-metadata (the files' own nodata, scale and offset), or pass "
            "--skip-failed to leave those sources out"
        ),
    )


def install_extra(extra: str) -> str:
    """For an optional part that is not installed: the extra that installs it (the same words in Python and on the
    command line). Until stackcube is on PyPI, extras install from a clone."""
    return f"install stackcube's {extra!r} extra (from a clone of stackcube: pip install '.[{extra}]')"
