"""The ``stackcube`` command line: a thin layer over the public API.

``stackcube build CATALOG`` commits a cube, ``refresh REPO`` brings it up to date, ``verify REPO`` checks its
sources, ``info REPO`` and ``log REPO`` describe one; ``inspect HREF`` prints what the extractor finds in a TIFF
and ``plan CATALOG`` how a search would be gridded; ``demo`` writes GeoTIFFs and a STAC catalog of its own and
builds a cube of them (no network, no services).

``build`` and ``refresh`` take ``--scheduler tcp://HOST:8786`` (a Dask cluster) or ``--processes N`` (a local
process pool) to read headers and write references there; the one commit stays in the command.

Exit codes: 0 done; 2 any error (one line on stderr, nothing committed; ``--debug`` adds the traceback); 3 nothing
to do (``refresh`` found nothing new or changed, ``verify`` found changed or vanished sources and was not asked to
``--fix`` them); 130 interrupted (Ctrl-C; one line says whether anything was committed); 141 the reader of the
output went away (``| head``), quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from stackcube._remedies import install_extra
from stackcube._text import counted
from stackcube._version import __version__
from stackcube.errors import MissingExtraError, StackcubeError, StackcubeWarning

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_UNCHANGED", "main", "run"]

EXIT_ERROR = 2
"""A stackcube error (or bad arguments): one line on stderr, nothing committed."""
EXIT_UNCHANGED = 3
"""``refresh``: nothing changed, nothing committed; ``verify``: some source changed or vanished (no ``--fix``)."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C): one line on stderr says what was committed (nothing, unless the commit was made)."""
EXIT_BROKEN_PIPE = 141
"""The reader of stdout went away (``| head``): a quiet stop, with the code of a shell tool stopped by SIGPIPE."""

# commands that commit (``verify`` only with --fix)
_WRITERS = frozenset({"build", "refresh", "demo"})


def _format_manifest(manifest: Any) -> str:
    lines = [
        f"{manifest.href}",
        f"  {manifest.size:,} bytes, {'BigTIFF' if manifest.bigtiff else 'TIFF'} "
        f"{'little' if manifest.byteorder == '<' else 'big'}-endian, ETag {manifest.etag}",
        f"  header: {manifest.header_requests} ranged GET(s), {manifest.header_bytes:,} bytes",
        f"  {'IFD':<8}{'role':<15}{'shape (band,y,x)':<22}{'chunk':<18}{'dtype':<9}{'codec':<24}{'segments':>9}",
    ]
    for ifd in manifest.ifds:
        recipe = ifd.recipe
        codec = _compression_name(recipe.compression)
        if recipe.predictor != 1:
            codec += f"+pred{recipe.predictor}"
        missing = int((ifd.lengths == 0).sum())
        segs = f"{ifd.offsets.size}" + (f" ({missing} empty)" if missing else "")
        role = ifd.role + (f" {ifd.level}" if ifd.level else "")
        lines.append(
            f"  {'/'.join(map(str, ifd.path)):<8}{role:<15}{ifd.shape!s:<22}{ifd.chunk_shape!s:<18}"
            f"{ifd.dtype.name:<9}{codec:<24}{segs:>9}"
        )
    lines.extend(f"  damaged: {ifd.damage}" for ifd in manifest.ifds if ifd.damage)
    first = manifest.ifds[0]
    if first.geo is not None:
        lines.append(f"  crs: {first.geo.crs if first.geo.crs and len(first.geo.crs) < 60 else 'WKT'}")
        lines.append(f"  transform: {first.geo.transform}")
    if first.fill_value is not None:
        lines.append(f"  nodata: {first.fill_value}")
    return "\n".join(lines)


def _compression_name(value: int) -> str:
    import tifffile

    try:
        return str(tifffile.COMPRESSION(value).name.lower())
    except ValueError:
        return str(value)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from stackcube.tiff import read_tiff

    manifest = read_tiff(args.href)
    if args.json:
        out = {
            "href": manifest.href,
            "etag": manifest.etag,
            "size": manifest.size,
            "header_requests": manifest.header_requests,
            "ifds": [
                {
                    "path": list(i.path),
                    "role": i.role,
                    "level": i.level,
                    "shape": list(i.shape),
                    "chunk_shape": list(i.chunk_shape),
                    "dtype": i.dtype.name,
                    "codec": i.recipe.to_config(),
                    "fill_value": i.fill_value,
                    "crs": i.geo.crs if i.geo else None,
                    "transform": list(i.geo.transform) if i.geo and i.geo.transform else None,
                }
                for i in manifest.ifds
            ],
        }
        print(json.dumps(out, indent=2, default=str))
    else:
        print(_format_manifest(manifest))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from stackcube.api import build_cube
    from stackcube.demo import write_demo_catalog, write_demo_tiff, write_quicklook
    from stackcube.tiff import open_manifest, read_tiff

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path, expected = write_demo_tiff(out / "demo-cog.tif")
    manifest = read_tiff(path)
    print(_format_manifest(manifest))
    da = open_manifest(manifest, 0)
    same = np.array_equal(da.values, expected)
    print(
        f"\nread {da.sizes['band']}x{da.sizes['y']}x{da.sizes['x']} {da.dtype} samples through Zarr from "
        f"{manifest.ifds[0].offsets.size} virtual chunk references: "
        f"{'identical to what was written' if same else 'DIFFERENT from what was written'}"
    )
    catalog = write_demo_catalog(out)
    print(f"\nwrote a static STAC catalog of demo scenes: {catalog}")
    cube = build_cube(catalog, repo=out / "cube.icechunk", progress=False, message="stackcube demo")
    print(cube.summary())
    png = write_quicklook(cube.open(), out / "quicklook.png")
    print(f"quicklook of the first date: {png}")
    return 0 if same else 1


def _cmd_build(args: argparse.Namespace) -> int:
    from stackcube.api import build_cube

    with _workers(args) as workers:
        cube = build_cube(
            **_search_args(args),
            repo=args.repo,
            branch=args.branch,
            message=args.message,
            tag=args.tag,
            on_error="skip" if args.skip_failed else "raise",
            **workers,
        )
    args.committed = f"snapshot {cube.snapshot_id}"
    print(f"wrote {_where(args.repo)}")
    print(cube.summary())
    return 0


def _where(repo: str) -> str:
    """A repository as the user can find it again: a local path made absolute, a URL as given."""
    if "://" in repo and not repo.startswith("file://"):
        return repo
    return str(Path(repo.removeprefix("file://")).resolve())


def _cmd_refresh(args: argparse.Namespace) -> int:
    from stackcube.refresh import refresh_cube

    with _workers(args) as workers:
        report = refresh_cube(
            args.repo,
            branch=args.branch,
            tag=args.tag,
            dry_run=args.dry_run,
            remove=args.remove,
            full_search=args.full_search,
            on_error="skip" if args.skip_failed else "raise",
            progress=not args.quiet,
            allow=args.allow,
            check_etags=args.check_etags,
            modifier=_modifier(args),
            credentials=_credentials(args),
            **workers,
        )
    if report.committed:
        args.committed = f"snapshot {report.snapshot_id}"
    print(report)
    return 0 if report.committed or (args.dry_run and (report.added or report.changed)) else EXIT_UNCHANGED


def _cmd_verify(args: argparse.Namespace) -> int:
    from stackcube.refresh import verify_cube

    report, refreshed = verify_cube(
        args.repo,
        branch=args.branch,
        fix=args.fix,
        progress=not args.quiet,
        allow=args.allow,
        credentials=_credentials(args),
    )
    print(report)
    if refreshed is not None:
        print(refreshed)
    return 0 if report.ok or (refreshed is not None and not report.vanished) else EXIT_UNCHANGED


def _cmd_info(args: argparse.Namespace) -> int:
    from stackcube.api import open_cube
    from stackcube.cube import unprotected_lines
    from stackcube.store import open_repository, read_stored, readonly_session
    from stackcube.store.layout import DATA, CubeMetadata, level_path

    repository = open_repository(args.repo)
    session = readonly_session(repository, branch=args.branch, tag=args.tag, repo=args.repo)
    tree = open_cube(args.repo, snapshot=session.snapshot_id)
    metadata = CubeMetadata.from_attrs(tree.attrs)
    written = repository.lookup_snapshot(session.snapshot_id).written_at
    version = f"tag {args.tag}" if args.tag else f"branch {args.branch}"
    print(f"{args.repo}: {version} at snapshot {session.snapshot_id} ({written:%Y-%m-%d %H:%M} UTC)")
    search = ", ".join(f"{k} {v}" for k, v in metadata.query.to_dict().items() if v and k != "catalog")
    origin = metadata.query.catalog or "a list of items"
    print(f"  built from {origin}" + (f" ({search})" if search else ""))
    print(f"  {counted(len(metadata.arrays), 'array')}:")
    everything: set[str] = set()
    for name in metadata.arrays:
        levels = [tree[level_path(name, n)][DATA] for n in sorted(int(k) for k in tree[name].children)]
        data = levels[0]
        sources = {h for cell in data["source_href"].to_numpy().ravel().tolist() for h in str(cell).split()}
        everything |= sources
        crs = str(tree[name].attrs.get("proj:code") or "")
        print(f"    {name}: {_describe(data, crs)}, {counted(len(sources), 'source')}")
        if len(levels) > 1:
            sizes = ", ".join(f"{o.sizes['y']} x {o.sizes['x']}" for o in levels[1:])
            print(f"      overview levels: {sizes} px")
    for union in metadata.unions:
        t, b, y, x = union.shape
        print(
            f"    {union.name}: a union of {counted(len(union.members), 'grid')} placed by pixel offset, "
            f"{counted(t, 'date')} x {counted(b, 'band')}, "
            f"{y} x {x} px ({', '.join(union.members)})"
        )
    containers = sorted(set(repository.config.virtual_chunk_containers or {}) | set(metadata.containers))
    n = len(everything)
    print(f"  {counted(n, 'source')}, under {', '.join(containers) or 'no container'}")
    for line in unprotected_lines(read_stored(session, args.repo).sources):
        print(line)
    branches, tags = sorted(repository.list_branches()), sorted(repository.list_tags())
    print(f"  branches: {', '.join(branches)}; tags: {', '.join(tags) or 'none'}")
    return 0


def _describe(data: Any, crs: str) -> str:
    """``4 dates from 2020-06-01 to 2020-06-16 x 4 bands (B02, B03, B04, B08), 512 x 512 px of 10 m in EPSG:32735,
    float32``."""
    days = [str(t)[:10] for t in data.time.values]
    dates = f"{counted(len(days), 'date')}" + (
        f" from {days[0]} to {days[-1]}" if len(days) > 1 else f", {days[0]}" if days else ""
    )
    bands = [str(b) for b in data.band.values]
    shown = ", ".join(bands[:12]) + (", ..." if len(bands) > 12 else "")
    pixel = ""
    if crs:
        import pyproj

        from stackcube._georef import pixel_size

        unit = pyproj.CRS.from_user_input(crs).axis_info[0].unit_name
        size = abs(pixel_size(data)[0])
        pixel = f" of {size:g} {'m' if unit == 'metre' else unit} in {crs}"
    return (
        f"{dates} x {counted(len(bands), 'band')} ({shown}), "
        f"{data.sizes['y']} x {data.sizes['x']} px{pixel}, {data.dtype}"
    )


def _cmd_log(args: argparse.Namespace) -> int:
    from stackcube.store import open_repository, version_not_found

    repository = open_repository(args.repo)
    if args.tag is not None and args.tag not in repository.list_tags():
        raise version_not_found(repository, tag=args.tag, repo=args.repo)
    if args.tag is None and args.branch not in repository.list_branches():
        raise version_not_found(repository, branch=args.branch, repo=args.repo)
    history = repository.ancestry(tag=args.tag) if args.tag else repository.ancestry(branch=args.branch)
    for snap in history:
        print(f"{snap.id}  {snap.written_at:%Y-%m-%d %H:%M:%S}  {snap.message}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from stackcube.api import plan_cube

    plan = plan_cube(**_search_args(args))
    print(plan.report())
    return 0


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


@contextlib.contextmanager
def _workers(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The ``client=`` or ``executor=`` that --scheduler or --processes ask for, closed after the command."""
    if getattr(args, "scheduler", None):
        try:
            from distributed import Client
        except ImportError:
            msg = f"--scheduler needs dask.distributed: {install_extra('distributed')}"
            raise MissingExtraError(msg) from None
        try:
            from stackcube.settings import current

            wait = current().request_timeout
            client = Client(args.scheduler, set_as_default=False, timeout=wait)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            msg = f"--scheduler {args.scheduler}: cannot reach it ({exc}); check the address and that it runs"
            raise ValueError(msg) from None
        with client:
            yield {"client": client}
    elif getattr(args, "processes", None) is not None:
        if args.processes < 1:
            msg = f"--processes {args.processes}: give 1 or more"
            raise ValueError(msg)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context("forkserver")) as pool:
            yield {"executor": pool}
    else:
        yield {}


def _credentials(args: argparse.Namespace) -> Any:
    if getattr(args, "credentials", None) == "planetary-computer":
        from stackcube.credentials import planetary_computer

        return planetary_computer()
    return None


def _modifier(args: argparse.Namespace) -> Any:
    """The function ``--modifier`` names (``package.module.function``), imported."""
    if not args.modifier:
        return None
    import importlib

    module, _, name = args.modifier.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except ImportError as exc:
        msg = f"--modifier {args.modifier}: cannot import {module} ({exc}); install the package that provides it"
        raise ValueError(msg) from None
    except AttributeError:
        found = None
    if not callable(found):
        msg = f"--modifier {args.modifier}: no function {name!r} in {module or 'a module'}; give module.function"
        raise ValueError(msg)
    return found


def _search_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "catalog": args.catalog,
        "bbox": tuple(args.bbox) if args.bbox else None,
        "datetime": args.datetime,
        "collections": args.collections,
        "assets": args.assets,
        "max_items": args.max_items,
        "groupby": None if args.groupby == "none" else args.groupby,
        "stac_metadata": not args.no_stac_metadata,
        "harmonize": args.harmonize,
        "progress": not args.quiet,
        **({"modifier": modifier} if (modifier := _modifier(args)) is not None else {}),
    }


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stackcube", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stackcube {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="print the manifest of a TIFF (local path, file://, http(s)://, s3://)")
    inspect.add_argument("href")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(func=_cmd_inspect)
    plan = sub.add_parser("plan", help="search a catalog, read the headers and print how the cube would be gridded")
    _add_search_arguments(plan)
    plan.set_defaults(func=_cmd_plan)
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
    build.set_defaults(func=_cmd_build)
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
        "--check-etags", action="store_true", help="HEAD every source first; re-index those replaced in place"
    )
    refresh.add_argument("--skip-failed", action="store_true", help="commit without sources that cannot be read")
    _add_modifier_argument(refresh)
    _add_credentials_argument(refresh)
    _add_workers_arguments(refresh)
    refresh.set_defaults(func=_cmd_refresh)
    verify = sub.add_parser("verify", help="HEAD every source; report what changed or vanished since indexing")
    _add_repo_arguments(verify, sources=True)
    verify.add_argument("--fix", action="store_true", help="refresh exactly the changed sources")
    _add_credentials_argument(verify)
    verify.set_defaults(func=_cmd_verify)
    info = sub.add_parser("info", help="arrays, dimensions, sources, branches and tags of a cube")
    _add_repo_arguments(info, tags=True)
    info.set_defaults(func=_cmd_info)
    log = sub.add_parser("log", help="the snapshots of a branch (or up to a tag), newest first")
    _add_repo_arguments(log, tags=True)
    log.set_defaults(func=_cmd_log)
    about = (
        "offline, in one folder: write a COG and a static STAC catalog of demo scenes, inspect and plan them, build "
        "a cube (OUT/cube.icechunk), read it back and save a quicklook (OUT/quicklook.png); running it again reuses "
        "the files and commits a new snapshot"
    )
    demo = sub.add_parser(
        "demo", help="build a demo cube offline: COGs, a STAC catalog, a cube, a quicklook", description=about
    )
    demo.add_argument("--out", default="demo-output", help="directory to write into (default: demo-output)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stackcube`` command."""
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.simplefilter("always", StackcubeWarning)  # said to the user, each time
            return int(args.func(args))
    except KeyboardInterrupt:
        print(f"stackcube: interrupted; {_what_was_committed(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        if not _stdout_closed():
            return _fail(args, BrokenPipeError("a connection was closed by its other end"))
        # the reader of our output went away (`stackcube info REPO | head -1`): as other command-line tools, stop
        # quietly; stdout goes to /dev/null so that the flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        return _fail(args, exc)


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    if args.debug:
        traceback.print_exception(exc)
    print(f"stackcube: error: {_one_line(exc)}", file=sys.stderr)
    return EXIT_ERROR


def _stdout_closed() -> bool:
    """Whether stdout's reader is gone, rather than some other pipe: flushing it fails with a broken pipe, or (the
    failed write having dropped what it held) polling it reports an error, as the write end of a pipe whose read
    end is closed does."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured output), or no poll here
        return False


def _what_was_committed(args: argparse.Namespace) -> str:
    """What a Ctrl-C left behind: a write commits once, at its end, so nothing unless the commit was made."""
    done = getattr(args, "committed", None)
    if done:
        return f"{done} had been committed before"
    if args.command in _WRITERS or getattr(args, "fix", False):
        return "nothing was committed (the branch is where it was)"
    return "nothing was changed"


def _show_warning(  # noqa: PLR0917 - the signature of warnings.showwarning
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """A warning as one line on stderr, as errors are: ``stackcube: warning: ...``."""
    print(f"stackcube: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _one_line(exc: Exception) -> str:
    """An error as one line: a stackcube error says what to do (naming the command); anything else is named, with
    where to look."""
    if isinstance(exc, StackcubeError):
        return " ".join(exc.for_cli().split()) or type(exc).__name__
    text = " ".join(str(exc).split())
    if isinstance(exc, ValueError | TypeError):
        return text or type(exc).__name__
    where = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return f"unexpected {where}: {text[:500]} (run again with --debug for the traceback, and report it)"


def run() -> NoReturn:
    """The ``stackcube`` command: :func:`main`, then out without the interpreter's teardown.

    Once the answer is printed and flushed, the process ends with ``os._exit``: tearing down Icechunk's native
    runtime while Python finalizes crashed once (SIGSEGV, exit code -11 instead of 2) in ~930 test runs, which a
    scheduler would count as a failure of the wrong kind. Nothing of stackcube's needs the teardown.
    """
    code = main()
    if _stdout_closed():  # the reader went away before the last of the output was flushed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or EXIT_BROKEN_PIPE
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
