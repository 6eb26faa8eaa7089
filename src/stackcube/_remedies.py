"""The remedies errors name, each said for Python and for the command line (:class:`stackcube.errors.Remedy`).

One function per remedy, so that what a message tells users to run is written once and is a call that works: a
source replaced in place is re-indexed by a refresh that compares ETags (a plain refresh asks the catalog, which
did not change), not by a plain refresh.
"""

from __future__ import annotations

import shlex

from stackcube.errors import Remedy

__all__ = ["allow_prefixes", "build", "drop_vanished", "install_extra", "reindex", "stac_metadata_off"]


def reindex(repo: str) -> Remedy:
    """For a source replaced since it was indexed: ask every source for its ETag and re-index the changed ones."""
    return Remedy(
        python=(
            f"re-index it with stackcube.refresh_cube({repo!r}, check_etags=True) "
            f"(or stackcube.verify_cube({repo!r}, fix=True))"
        ),
        cli=f"re-index it with: stackcube refresh --check-etags {shlex.quote(repo)} "
        f"(or stackcube verify --fix {shlex.quote(repo)})",
    )


def drop_vanished(repo: str) -> Remedy:
    """For a source deleted or moved since it was indexed: search the whole catalog again and drop what it lost."""
    return Remedy(
        python=(
            f"stackcube.verify_cube({repo!r}) lists the sources that vanished; "
            f"stackcube.refresh_cube({repo!r}, full_search=True, remove=True) indexes where the catalog now points "
            "and drops the items it no longer lists"
        ),
        cli=(
            f"stackcube verify {shlex.quote(repo)} lists the sources that vanished; "
            f"stackcube refresh --full-search --remove {shlex.quote(repo)} indexes where the catalog now points and "
            "drops the items it no longer lists"
        ),
    )


def build(repo: str) -> Remedy:
    """For a repository that does not exist: build a cube there."""
    return Remedy(
        python=f"build one with stackcube.build_cube(catalog, repo={repo!r})",
        cli=f"build one with: stackcube build CATALOG --repo {shlex.quote(repo)}",
    )


def allow_prefixes(prefixes: list[str]) -> Remedy:
    """For a cube that reads outside the prefixes allowed: allow them, if the cube is trusted."""
    return Remedy(
        python=f"add them to allow= only if you trust this cube (allow=[..., {', '.join(map(repr, prefixes))}])",
        cli=f"add them to --allow only if you trust this cube (--allow ... {' '.join(map(shlex.quote, prefixes))})",
    )


def stac_metadata_off() -> Remedy:
    """For band metadata in a catalog that cannot be right: fix the catalog, or use the files' own."""
    return Remedy(
        python="fix the catalog, or pass stac_metadata=False (the files' own nodata, scale and offset)",
        cli="fix the catalog, or pass --no-stac-metadata (the files' own nodata, scale and offset)",
    )


def install_extra(extra: str) -> str:
    """For an optional part that is not installed: the extra that installs it (the same words in Python and on the
    command line). Until stackcube is on PyPI, extras install from a clone."""
    return f"install stackcube's {extra!r} extra (from a clone of stackcube: pip install '.[{extra}]')"
