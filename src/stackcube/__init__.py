"""stackcube: STAC search -> virtual, versioned (time, band, y, x) datacubes of Cloud-Optimized GeoTIFFs.

The package is the pipeline. Stages, in the order they run (a stage never imports a later one):

1. ``stackcube.search``   catalog URL / static catalog / items + bbox/datetime/filters -> items
2. ``stackcube.assets``   which assets of each item become bands, and why others are skipped
3. ``stackcube.tiff``     TIFF headers -> TiffManifest (where every tile lives, how to decode it)
4. ``stackcube.grid``     sources grouped by CRS, resolution, phase and encoding (GridKey)
5. ``stackcube.plan``     CubePlan: which source chunk lands at which chunk index (plain data)
6. ``stackcube.icechunk`` CubePlan -> a committed Icechunk repository of virtual references; open it back
   (``stackcube.union`` assembles the grids that share pixels but not tiles into one array when reading)

``stackcube.api`` is the module that knows this order; ``stackcube.refresh`` runs it again on a stored cube
(new and changed sources only) and verifies sources.

``stackcube.errors`` holds the one error tree; ``stackcube.settings`` the concurrency cap; ``stackcube.cli`` the
command line.
"""

from stackcube import errors, settings
from stackcube._version import __version__
from stackcube.api import Cube, build_cube, open_cube, open_dataarray, plan_cube, plan_cube_async
from stackcube.errors import StackcubeError
from stackcube.plan import CubePlan, GroupPlan
from stackcube.refresh import RefreshReport, VerifyReport, refresh_cube, verify_cube
from stackcube.regrid import to_grid
from stackcube.stack import stack

__all__ = [
    "Cube",
    "CubePlan",
    "GroupPlan",
    "RefreshReport",
    "StackcubeError",
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
    "verify_cube",
]
