"""stackcube: STAC search -> virtual, versioned (time, band, y, x) datacubes of Cloud-Optimized GeoTIFFs.

The package is the pipeline. Stages, in the order they run (a stage never imports a later one):

1. ``stackcube.tiff``     TIFF headers -> TiffManifest (where every tile lives, how to decode it)
2. ``stackcube.search``   catalog URL / static catalog / items -> items and assets        (planned)
3. ``stackcube.grid``     sources grouped by CRS, resolution, phase and encoding -> CubePlan (planned)
4. ``stackcube.icechunk`` CubePlan -> a committed Icechunk repository                        (planned)

``stackcube.errors`` holds the one error tree; ``stackcube.settings`` the concurrency cap; ``stackcube.cli`` the
command line.
"""

from importlib.metadata import PackageNotFoundError, version

from stackcube import errors, settings
from stackcube.errors import StackcubeError

try:
    __version__ = version("stackcube")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["StackcubeError", "__version__", "errors", "settings"]
