"""The command line's arguments: one sub-parser per command, each calling its function in ``_commands``."""

from __future__ import annotations

import argparse

from stackcube._version import __version__
from stackcube.cli._commands import (
    cmd_build,
    cmd_demo,
    cmd_info,
    cmd_inspect,
    cmd_log,
    cmd_plan,
    cmd_refresh,
    cmd_stac,
    cmd_verify,
)

__all__ = ["make_parser"]

DESCRIPTION = "stackcube: virtual, versioned datacubes of Cloud-Optimized GeoTIFFs from STAC searches"


def _add_search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "catalog",
        help="STAC API URL, static catalog/collection, ItemCollection file, or stac-geoparquet file/directory",
    )
    parser.add_argument("--bbox", nargs=4, type=float, metavar=("WEST", "SOUTH", "EAST", "NORTH"))
    parser.add_argument("--datetime", help="e.g. 2020-06 or 2020-06-01/2020-07-31")
    parser.add_argument("--collections", nargs="+")
    parser.add_argument("--assets", nargs="+", help="asset keys or eo:bands common names, in band order")
    parser.add_argument("--max-items", type=int)
    parser.add_argument(
        "--groupby",
        choices=["datetime", "solar_day", "none"],
        default="datetime",
        help="time steps of grids placed by pixel offset: per datetime, per solar day, or one per item",
    )
    parser.add_argument(
        "--no-stac-metadata",
        action="store_true",
        help="ignore STAC's band nodata, scale and offset (raster:bands, bands); use the files' alone",
    )
    parser.add_argument(
        "--harmonize",
        choices=["sentinel-2"],
        help="sentinel-2: ESA's offset of -1000 DN for items from processing baseline 04.00 where STAC states none",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_modifier_argument(parser)
    _add_header_argument(parser)


def _add_header_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="a request header for the STAC API, e.g. an API key (repeatable; never stored in the cube)",
    )


def _add_catalog_arguments(parser: argparse.ArgumentParser) -> None:
    """--catalog and --header: the catalog's credentials, which a cube never stores, given again."""
    parser.add_argument(
        "--catalog",
        metavar="URL",
        help="the cube's catalog URL with the credentials it was built with (such as ?subscription-key=KEY), "
        "which the cube does not store",
    )
    _add_header_argument(parser)


def _add_modifier_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--modifier",
        metavar="MODULE.FUNCTION",
        help="called on every item found, e.g. planetary_computer.sign_inplace (signs its hrefs for reading)",
    )


def _add_credentials_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--credentials",
        choices=["planetary-computer"],
        help="credentials for the sources: planetary-computer (a SAS token per Azure container, from its endpoint)",
    )


def _add_workers_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://host:8786): headers are read and references written on its workers",
    )
    where.add_argument(
        "--processes", type=int, metavar="N", help="do that work in N local processes instead (a process pool)"
    )


def _add_repo_arguments(parser: argparse.ArgumentParser, *, sources: bool = False, tags: bool = False) -> None:
    """REPO and --branch; with ``tags`` (commands that only read the cube) --tag instead of a branch, and with
    ``sources`` (commands that read them) also --allow and --quiet."""
    parser.add_argument("repo", help="the cube: a local path or s3://bucket/prefix")
    if tags:
        version = parser.add_mutually_exclusive_group()
        version.add_argument("--branch", default="main", help="the branch (default: main)")
        version.add_argument("--tag", help="a tag instead of a branch")
    else:
        parser.add_argument("--branch", default="main", help="the branch (default: main)")
    if sources:
        parser.add_argument("--allow", nargs="+", metavar="PREFIX", help="refuse a cube reading outside these URLs")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stackcube", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"stackcube {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="print the manifest of a TIFF (local path, file://, http(s)://, s3://)")
    inspect.add_argument("href")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(func=cmd_inspect)
    plan = sub.add_parser("plan", help="search a catalog, read the headers and print how the cube would be gridded")
    _add_search_arguments(plan)
    plan.set_defaults(func=cmd_plan)
    build = sub.add_parser("build", help="search a catalog and commit a virtual cube to an Icechunk repository")
    _add_search_arguments(build)
    build.add_argument(
        "--repo", default="cube.icechunk", help="local path or s3://bucket/prefix (default: ./cube.icechunk)"
    )
    build.add_argument("--branch", default="main")
    build.add_argument("--message")
    build.add_argument("--tag")
    build.add_argument("--skip-failed", action="store_true", help="commit without sources that cannot be read")
    _add_workers_arguments(build)
    build.set_defaults(func=cmd_build)
    refresh = sub.add_parser("refresh", help="search again; index new and changed items; commit once (or not)")
    _add_repo_arguments(refresh, sources=True)
    refresh.add_argument("--tag", help="tag the new snapshot")
    refresh.add_argument("--dry-run", action="store_true", help="say what would change; read and write nothing")
    refresh.add_argument("--remove", action="store_true", help="drop items the search no longer finds")
    refresh.add_argument(
        "--full-search",
        action="store_true",
        help="run the whole stored search (by default a STAC API is asked only for items new or changed since the "
        "last refresh, less a window)",
    )
    refresh.add_argument(
        "--check-etags",
        action="store_true",
        help="HEAD every source first; re-index those replaced in place, and read those deleted again (with "
        "--skip-failed, the ones still missing are left out)",
    )
    refresh.add_argument("--skip-failed", action="store_true", help="commit without sources that cannot be read")
    refresh.add_argument(
        "--stac",
        metavar="FILE",
        help="then write the cube's STAC Collection to FILE, as `stackcube stac` does (keeping the id, title, "
        "description, license and repository href of the Collection already there)",
    )
    _add_modifier_argument(refresh)
    _add_catalog_arguments(refresh)
    _add_credentials_argument(refresh)
    _add_workers_arguments(refresh)
    refresh.set_defaults(func=cmd_refresh)
    verify = sub.add_parser("verify", help="HEAD every source; report what changed or vanished since indexing")
    _add_repo_arguments(verify, sources=True)
    verify.add_argument("--fix", action="store_true", help="refresh exactly the changed sources")
    _add_modifier_argument(verify)
    _add_catalog_arguments(verify)
    _add_credentials_argument(verify)
    verify.set_defaults(func=cmd_verify)
    info = sub.add_parser("info", help="arrays, dimensions, sources, branches and tags of a cube")
    _add_repo_arguments(info, tags=True)
    info.set_defaults(func=cmd_info)
    stac = sub.add_parser(
        "stac",
        help="describe the cube as a STAC Collection: its Icechunk repository as an asset, the datacube fields",
    )
    _add_repo_arguments(stac, tags=True)
    stac.add_argument("--out", metavar="FILE", help="write the Collection to FILE (default: print it)")
    stac.add_argument(
        "--href", help="the repository's URL as users open it (default: REPO, a local path made absolute)"
    )
    stac.add_argument("--id", help="the Collection's id (default: the repository's name)")
    stac.add_argument("--title")
    stac.add_argument("--description")
    stac.add_argument("--license", help="an SPDX license id of the data (default: other)")
    stac.set_defaults(func=cmd_stac)
    log = sub.add_parser("log", help="the snapshots of a branch (or up to a tag), newest first")
    _add_repo_arguments(log, tags=True)
    log.set_defaults(func=cmd_log)
    about = (
        "offline, in one folder: write a COG and a static STAC catalog of demo scenes, inspect and plan them, build "
        "a cube (OUT/cube.icechunk), read it back and save a quicklook (OUT/quicklook.png); running it again reuses "
        "the files and commits a new snapshot"
    )
    demo = sub.add_parser(
        "demo", help="build a demo cube offline: COGs, a STAC catalog, a cube, a quicklook", description=about
    )
    demo.add_argument("--out", default="demo-output", help="directory to write into (default: demo-output)")
    demo.set_defaults(func=cmd_demo)
    return parser
