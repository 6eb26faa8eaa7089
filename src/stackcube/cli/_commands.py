"""What each command does: the calls of the public API it makes, and how it prints their results."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stackcube._remedies import install_extra
from stackcube._text import counted
from stackcube.cli._exit import EXIT_UNCHANGED
from stackcube.errors import MissingExtraError

__all__ = [
    "cmd_build",
    "cmd_demo",
    "cmd_info",
    "cmd_inspect",
    "cmd_log",
    "cmd_plan",
    "cmd_refresh",
    "cmd_stac",
    "cmd_verify",
    "committed_to",
]


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
        lines.append(f"  crs: {_crs_name(first.geo.crs, bool(first.geo.geokeys))}")
        lines.append(f"  transform: {first.geo.transform}")
    if first.fill_value is not None:
        lines.append(f"  nodata: {first.fill_value}")
    return "\n".join(lines)


def _crs_name(crs: str | None, geokeys: bool) -> str:
    """:func:`stackcube._georef.crs_name`, or why there is none."""
    if crs is None:
        return "none that GDAL reads from its GeoKeys" if geokeys else "none"
    from stackcube._georef import crs_name

    return crs_name(crs)


def _compression_name(value: int) -> str:
    import tifffile

    try:
        return str(tifffile.COMPRESSION(value).name.lower())
    except ValueError:
        return str(value)


def cmd_inspect(args: argparse.Namespace) -> int:
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


def cmd_demo(args: argparse.Namespace) -> int:
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


def cmd_build(args: argparse.Namespace) -> int:
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
    print(f"wrote {_where(args.repo)}")
    print(cube.summary())
    return 0


def _where(repo: str) -> str:
    """A repository as the user can find it again: a local path made absolute, a URL as given."""
    if "://" in repo and not repo.startswith("file://"):
        return repo
    return str(Path(repo.removeprefix("file://")).resolve())


def cmd_refresh(args: argparse.Namespace) -> int:
    from stackcube.refresh import refresh_cube
    from stackcube.stac import check_output

    if args.stac and not args.dry_run:
        check_output(args.stac)  # before the refresh: a path that cannot be written says so before any commit
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
            catalog=args.catalog,
            headers=_headers(args),
            **workers,
        )
    print(report)
    if args.stac and args.dry_run:
        print(f"  STAC Collection {args.stac} not written (--dry-run)")
    elif args.stac:
        # the new snapshot by its tag when one was made, else the branch's tip (the latest, whoever wrote it)
        _rewrite_stac(args.repo, Path(args.stac), branch=args.branch, tag=args.tag if report.committed else None)
    return 0 if report.committed or (args.dry_run and (report.added or report.changed)) else EXIT_UNCHANGED


def cmd_stac(args: argparse.Namespace) -> int:
    from stackcube.stac import stac_text, to_stac, write_stac

    given = {"id": args.id, "title": args.title, "description": args.description, "license": args.license}
    chosen = {k: v for k, v in given.items() if v is not None}
    branch = None if args.tag else args.branch
    collection = to_stac(args.repo, branch=branch, tag=args.tag, href=args.href, **chosen)
    if args.out:
        _written(collection, write_stac(collection, args.out))
    else:
        print(stac_text(collection), end="")
    return 0


def _written(collection: Any, path: Path) -> None:
    from stackcube.stac import CUBE_ASSET

    version = collection.assets[CUBE_ASSET].extra_fields["version"]
    print(f"STAC Collection {collection.id} written to {path} (version {version})")


def _rewrite_stac(repo: str, path: Path, *, branch: str, tag: str | None) -> None:
    """The cube's Collection written again after a refresh (at ``tag``, else ``branch``'s tip), keeping what the one
    already at ``path`` says of itself: its id, title, description, license and the repository's href."""
    from stackcube.stac import CUBE_ASSET, to_stac, write_stac

    before: Any = None
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):  # not JSON we can read: written anew
            before = json.loads(path.read_text())
    before = before if isinstance(before, dict) else {}  # nor a JSON object: written anew
    kept = {k: before[k] for k in ("id", "title", "description", "license") if isinstance(before.get(k), str)}
    assets = before.get("assets")
    cube = assets.get(CUBE_ASSET) if isinstance(assets, dict) else None
    href = cube.get("href") if isinstance(cube, dict) else None
    collection = to_stac(
        repo, branch=None if tag else branch, tag=tag, href=href if isinstance(href, str) else None, **kept
    )
    _written(collection, write_stac(collection, path))


def cmd_verify(args: argparse.Namespace) -> int:
    from stackcube.verify import verify_cube

    report, refreshed = verify_cube(
        args.repo,
        branch=args.branch,
        fix=args.fix,
        progress=not args.quiet,
        allow=args.allow,
        credentials=_credentials(args),
        modifier=_modifier(args),
        catalog=args.catalog,
        headers=_headers(args),
    )
    print(report)
    if refreshed is not None:
        print(refreshed)
    unfixed = {href for href, _ in report.vanished} - set(report.gone)  # unreachable: not known to be gone
    return 0 if report.ok or (refreshed is not None and not unfixed) else EXIT_UNCHANGED


def cmd_info(args: argparse.Namespace) -> int:
    from stackcube.api import open_cube
    from stackcube.cube import unprotected_lines
    from stackcube.store import open_repository, read_stored, readonly_session
    from stackcube.store.layout import DATA, CubeMetadata, level_path

    repository = open_repository(args.repo)
    session = readonly_session(repository, branch=args.branch, tag=args.tag, repo=args.repo)
    # every array is described, members of unions too: the tree with them (open_cube lists them without)
    tree = open_cube(args.repo, snapshot=session.snapshot_id, members=True)
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


def cmd_log(args: argparse.Namespace) -> int:
    from stackcube._text import counted
    from stackcube.store import open_repository, version_not_found
    from stackcube.store.repo import is_stage

    repository = open_repository(args.repo)
    if args.tag is not None and args.tag not in repository.list_tags():
        raise version_not_found(repository, tag=args.tag, repo=args.repo)
    if args.tag is None and args.branch not in repository.list_branches():
        raise version_not_found(repository, branch=args.branch, repo=args.repo)
    history = repository.ancestry(tag=args.tag) if args.tag else repository.ancestry(branch=args.branch)
    stages = 0  # a big build's stage snapshots (part of its references, below its commit): the first, then a count

    def more() -> None:
        if stages > 1:
            print(f"{'':20}  ... and {counted(stages - 1, 'more stage')} of the same build")

    for snap in history:
        stage = is_stage(snap.metadata)
        if stage and stages:
            stages += 1
            continue
        more()
        stages = int(stage)
        print(f"{snap.id}  {snap.written_at:%Y-%m-%d %H:%M:%S}  {snap.message}")
    more()
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from stackcube.api import plan_cube

    plan = plan_cube(**_search_args(args))
    print(plan.report())
    return 0


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


def _headers(args: argparse.Namespace) -> dict[str, str] | None:
    """The request headers ``--header 'NAME: VALUE'`` give (None when none)."""
    given = getattr(args, "header", None)
    if not given:
        return None
    headers = {}
    for text in given:
        name, colon, value = text.partition(":")
        if not colon or not name.strip():
            msg = "--header: give each as 'NAME: VALUE' (one has no name before a colon; its text is not shown)"
            raise ValueError(msg)
        headers[name.strip()] = value.strip()
    return headers


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
        **({"headers": headers} if (headers := _headers(args)) is not None else {}),
    }


def committed_to(args: argparse.Namespace) -> tuple[str, str] | None:
    """The repository and branch the command commits to; None for a command that only reads."""
    if args.command == "demo":
        return str(Path(args.out) / "cube.icechunk"), "main"
    writes = args.command == "build" or (args.command == "refresh" and not args.dry_run)
    if writes or (args.command == "verify" and args.fix):
        return str(args.repo), str(args.branch)
    return None
