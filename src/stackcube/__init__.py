"""stackcube: STAC search -> virtual, versioned (time, band, y, x) datacubes of Cloud-Optimized GeoTIFFs.

The package is the pipeline. Stages, in the order they run (a stage imports only the ones before it):

1. ``stackcube.search``   catalog URL / static catalog / items + bbox/datetime/filters -> items
2. ``stackcube.assets``   which assets of each item become bands, and why others are skipped
3. ``stackcube.tiff``     TIFF headers -> TiffManifest (where every tile lives, how to decode it)
4. ``stackcube.bands``    what each band's values mean (nodata, scale, offset, unit): STAC first, then the file;
   ``stackcube.projection`` what STAC's projection extension says of a grid: compared with the file's, used where
                          the file has none
5. ``stackcube.sources``  every chosen asset with its manifest and band metadata (header reads, concurrent) -> Source
6. ``stackcube.grid``     sources grouped by CRS, resolution, phase, encoding and nodata (GridKey)
7. ``stackcube.plan``     ArrayPlan: the sources of one grid placed chunk by chunk in one array, per level, with the
                          scale and offset of every time step and band
8. ``stackcube.union``    UnionPlan: arrays on one pixel lattice as one array; reading it back
9. ``stackcube.cube``     CubePlan: the arrays and unions of a cube, and the report of every decision
10. ``stackcube.store``   CubePlan -> a committed Icechunk repository of virtual references; open it back

``stackcube.api`` is the module that knows this order; ``stackcube.refresh`` runs it again on a stored cube (new
and changed sources only), and ``stackcube.verify`` asks whether its sources are still the ones indexed (each calls
the other: ``check_etags``, ``fix``); ``stackcube.stack`` (stackstac's shape), ``stackcube.regrid``
(``to_grid``) and ``stackcube.quicklook`` present what the store opens, ``stackcube.engine`` opens it for
xarray (``xr.open_dataset(repo, engine="stackcube")``), ``stackcube.stac`` describes it as a STAC Collection
(``to_stac``) and ``stackcube.tiles`` serves it as map tiles (titiler-xarray).

Shared by every stage: ``stackcube.errors`` (the one error tree), ``stackcube.settings`` (concurrency, timeouts,
retries, where S3 is), ``stackcube.options`` (how assets become arrays). ``stackcube.cli`` is the command line.
Every reader decodes stored values the same way (``stackcube._physical``: nodata as NaN, then scale and offset per
time step and band).

Words: users open *arrays* (one per grid, or a union of them); a *grid* is what sources share (``GridKey``); the
resolutions of an array are its *levels* (0 is full resolution, then the sources' internal overviews).
"""

import sys
import types
from typing import TYPE_CHECKING, Any

from stackcube import errors, settings
from stackcube._version import __version__
from stackcube.errors import StackcubeError

if TYPE_CHECKING:  # imported on first use (below): ``import stackcube`` stays fast for the CLI and scheduled jobs
    from stackcube.api import Cube, build_cube, open_cube, open_dataarray, plan_cube, plan_cube_async
    from stackcube.cube import CubePlan
    from stackcube.options import CubeOptions
    from stackcube.plan import ArrayPlan
    from stackcube.refresh import RefreshReport, refresh_cube
    from stackcube.regrid import to_grid
    from stackcube.stac import to_stac
    from stackcube.stack import stack
    from stackcube.union import UnionPlan
    from stackcube.verify import VerifyReport, verify_cube

_LAZY = {
    "ArrayPlan": "stackcube.plan",
    "Cube": "stackcube.api",
    "CubeOptions": "stackcube.options",
    "CubePlan": "stackcube.cube",
    "RefreshReport": "stackcube.refresh",
    "UnionPlan": "stackcube.union",
    "VerifyReport": "stackcube.verify",
    "build_cube": "stackcube.api",
    "open_cube": "stackcube.api",
    "open_dataarray": "stackcube.api",
    "plan_cube": "stackcube.api",
    "plan_cube_async": "stackcube.api",
    "refresh_cube": "stackcube.refresh",
    "stack": "stackcube.stack",
    "to_grid": "stackcube.regrid",
    "to_stac": "stackcube.stac",
    "verify_cube": "stackcube.verify",
}
"""Where each public name lives, imported when first asked for (PEP 562): xarray, zarr, Icechunk and pandas cost
seconds to import on a small machine, which a ``stackcube --help`` or an error message should not pay."""

__all__ = [
    "ArrayPlan",
    "Cube",
    "CubeOptions",
    "CubePlan",
    "RefreshReport",
    "StackcubeError",
    "UnionPlan",
    "VerifyReport",
    "__version__",
    "build_cube",
    "errors",
    "open_cube",
    "open_dataarray",
    "plan_cube",
    "plan_cube_async",
    "refresh_cube",
    "settings",
    "stack",
    "to_grid",
    "to_stac",
    "verify_cube",
]


class _Package(types.ModuleType):
    """The package's module: importing a submodule named like a public function (``stackcube.stack``) must not
    replace the function (Python binds every imported submodule as an attribute of its package)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return  # the module stays in sys.modules; the name keeps meaning the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    import importlib
    import importlib.util

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # asked once: a module attribute from then on
        return value
    if name.isidentifier() and not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f"{__name__}.{name}")  # a stage: stackcube.store, stackcube.tiff, ...
    if name == "GroupPlan":
        import warnings

        warnings.warn("stackcube.GroupPlan is deprecated; use stackcube.ArrayPlan", DeprecationWarning, stacklevel=2)
        return __getattr__("ArrayPlan")
    msg = f"module 'stackcube' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
