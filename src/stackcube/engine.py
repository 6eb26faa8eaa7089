"""The xarray engine: ``xr.open_dataset(repo, engine="stackcube", group="ARRAY/0")`` and
``xr.open_datatree(repo, engine="stackcube")`` open a cube as :func:`stackcube.open_dataarray` and
:func:`stackcube.open_cube` do, for code (and tools) that open everything through xarray.

Registered as the ``xarray.backends`` entry point ``stackcube`` (the name the cube's codec is also registered and
written under is ``stackcube.tiff``). The engine's keywords are :class:`~stackcube.store.OpenArgs`: ``branch``,
``tag`` or ``snapshot``; ``allow``; ``credentials``; ``mask_and_scale``; and ``members`` for a tree.

xarray itself takes ``chunks``: the engine opens without dask (``chunks=False`` of stackcube's own functions) and
tells xarray its preferred chunks, so ``chunks={}`` gives the dask chunks stackcube's functions give by default
(whole source tiles, about 2048 pixels square, one date and band each), ``chunks=None`` (xarray's default) no dask,
and a dict those chunks (the dimensions it leaves out keep the preferred ones; chunks that split them draw xarray's
warning even where they follow the source tiles). ``chunks="auto"`` fails on the string coordinates (dask does not
size object arrays).

xarray names the dask arrays it makes after the call's arguments (the path, the keywords), not after the
snapshot a branch pointed at: one process that opens a moving branch twice, with ``chunks``, and computes both in
one graph (or keeps one persisted on a cluster) would mix their chunks. Open by ``snapshot=`` (or ``tag=``) where
a branch may move while a process lives; stackcube's own readers name their arrays after the snapshot.

This module imports nothing heavy at import: xarray loads every installed engine's module to find one by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from xarray.backends import BackendEntrypoint

if TYPE_CHECKING:
    import xarray as xr

    from stackcube.settings import Credentials
    from stackcube.store import OpenArgs

__all__ = ["StackcubeBackendEntrypoint"]

_DECODERS = ("decode_times", "decode_timedelta", "use_cftime", "concat_characters", "decode_coords")
"""xarray's decoding keywords other than ``mask_and_scale``: stackcube decodes times, coordinates and text itself,
so only what it does anyway is taken (xarray passes one only when it is given)."""
_AS_STACKCUBE_DOES = {"use_cftime": (None, False), "decode_coords": (None, True, "all")}
_KEYWORDS = ("group", "branch", "tag", "snapshot", "allow", "credentials", "mask_and_scale", "members")
"""The engine's own keywords, named when another one is given."""


class StackcubeBackendEntrypoint(BackendEntrypoint):
    """Open a stackcube cube (an Icechunk repository of virtual references into GeoTIFFs) with xarray.

    ``group`` is ``"ARRAY/LEVEL"`` (``"EPSG32735_10m/0"``: full resolution), ``"ARRAY"`` (its level 0) or left
    out when the cube has one array; the Dataset is that level's group: ``data`` (time, band, y, x) and its
    coordinates, physical values unless ``mask_and_scale=False``.

    Examples
    --------
    >>> ds = xr.open_dataset("cube.icechunk", engine="stackcube", group="EPSG32735_10m/0", chunks={})  # doctest: +SKIP
    >>> tree = xr.open_datatree("s3://bucket/cube.icechunk", engine="stackcube", tag="june")  # doctest: +SKIP
    """

    description = "Open stackcube cubes (Icechunk repositories of virtual GeoTIFF references) as xarray objects"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "group",
        "branch",
        "tag",
        "snapshot",
        "allow",
        "credentials",
        "mask_and_scale",
        *_DECODERS,
    )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Never by itself: an Icechunk repository is not always a cube, so the engine is asked for by name."""
        return False

    # each open spells the keywords out (as open_datatree does again): xarray passes a backend only the keywords
    # its signature names, and shows them to users
    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        branch: str | None = None,
        tag: str | None = None,
        snapshot: str | None = None,
        allow: Sequence[str] | None = None,
        credentials: Credentials | None = None,
        mask_and_scale: bool = True,
        **decoders: Any,
    ) -> xr.Dataset:
        """One level of one array, as :func:`stackcube.open_dataarray` opens it, as the Dataset of its group."""
        from stackcube.store import OpenOptions, open_level_dataset

        _check_decoders(decoders)
        array, level = _array_and_level(group)
        args = _args(branch, tag, snapshot, allow, credentials, mask_and_scale)
        options = OpenOptions.from_args(args, "open_dataset")
        ds = open_level_dataset(_repo(filename_or_obj), array, level, options, keyword="group")
        return _dropped(ds, drop_variables)

    def open_datatree(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        branch: str | None = None,
        tag: str | None = None,
        snapshot: str | None = None,
        allow: Sequence[str] | None = None,
        credentials: Credentials | None = None,
        mask_and_scale: bool = True,
        members: bool = False,
        **decoders: Any,
    ) -> xr.DataTree:
        """The cube as :func:`stackcube.open_cube` opens it (``group``: the subtree at that path)."""
        from stackcube.store import OpenOptions, open_datatree

        _check_decoders(decoders)
        args = _args(branch, tag, snapshot, allow, credentials, mask_and_scale)
        options = OpenOptions.from_args({**args, "members": members}, "open_cube")
        tree = open_datatree(_repo(filename_or_obj), options)
        if group not in (None, "", "/"):
            tree = _subtree(tree, str(group), filename_or_obj)
        if drop_variables is not None:
            tree = tree.map_over_datasets(lambda ds: _dropped(ds, drop_variables))
        return tree

    def open_groups_as_dict(self, filename_or_obj: Any, **kwargs: Any) -> dict[str, xr.Dataset]:
        """Every node of :meth:`open_datatree`'s tree by its path (``xr.open_groups``)."""
        tree = self.open_datatree(filename_or_obj, **kwargs)
        return {node.path: node.to_dataset() for node in tree.subtree}


def _check_decoders(decoders: dict[str, Any]) -> None:
    """Refuse a decoding keyword that asks for other than what stackcube does (and any other keyword, by name)."""
    for name, value in decoders.items():
        if name not in _DECODERS:
            msg = f"the stackcube engine takes no {name}= (it takes {', '.join(_KEYWORDS)})"
            raise TypeError(msg)
        if value not in _AS_STACKCUBE_DOES.get(name, (None, True)):
            msg = (
                f"the stackcube engine decodes times, coordinates and text itself: {name}={value!r} is not offered "
                "(mask_and_scale=False gives the stored values)"
            )
            raise ValueError(msg)


def _args(  # noqa: PLR0917  # the engine's keywords, passed on as they came
    branch: str | None,
    tag: str | None,
    snapshot: str | None,
    allow: Sequence[str] | None,
    credentials: Credentials | None,
    mask_and_scale: bool,
) -> OpenArgs:
    """The engine's keywords as stackcube's readers take them, without dask (xarray chunks what it opens)."""
    args: OpenArgs = {"chunks": False, "mask_and_scale": mask_and_scale}
    given = {"branch": branch, "tag": tag, "snapshot": snapshot, "allow": allow, "credentials": credentials}
    args.update({k: v for k, v in given.items() if v is not None})  # type: ignore[typeddict-item]
    return args


def _array_and_level(group: str | None) -> tuple[str | None, int]:
    """``"ARRAY/LEVEL"``, ``"ARRAY"`` or None as (array, level); a level that is not a number is refused."""
    if group is None or group.strip("/") == "":
        return None, 0
    array, _, level = group.strip("/").partition("/")
    if not level:
        return array, 0
    if not (level.isascii() and level.isdecimal()):
        from stackcube.errors import ArrayNotFoundError

        msg = f"group={group!r}: give an array and a level number, as 'ARRAY/0' (0 is full resolution)"
        raise ArrayNotFoundError(msg)
    return array, int(level)


def _repo(filename_or_obj: Any) -> Any:  # Any: xarray's type for it names file objects no cube can be
    """What xarray hands over (a path, an URL, an ``icechunk.Repository``) as a repository."""
    return os.fspath(filename_or_obj) if isinstance(filename_or_obj, os.PathLike) else filename_or_obj


def _dropped(ds: xr.Dataset, names: str | Iterable[str] | None) -> xr.Dataset:
    if names is None:
        return ds
    return ds.drop_vars([names] if isinstance(names, str) else list(names), errors="ignore")


def _subtree(tree: xr.DataTree, group: str, repo: Any) -> xr.DataTree:
    """The node at ``group`` of ``tree``, as the root of a tree of its own; a path the cube lacks lists its arrays."""
    try:
        node = tree[group.strip("/")]
    except KeyError:
        node = None
    if not isinstance(node, type(tree)):
        from stackcube.errors import ArrayNotFoundError

        msg = f"{repo} has no group {group!r}; it has: {', '.join(tree.children)}"
        raise ArrayNotFoundError(msg)
    return node.copy()  # a copy is a tree of its own
