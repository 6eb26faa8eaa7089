"""Process-wide settings, read once from the environment and changeable at run time.

``max_concurrency`` is the one cap on requests in flight (header reads, HEADs); ``header_bytes`` is the size
of the first ranged GET of a TIFF, large enough to hold a whole COG header in one request.

Examples
--------
>>> import stackcube.settings
>>> stackcube.settings.max_concurrency = 16
"""

from __future__ import annotations

import os

__all__ = ["header_bytes", "max_concurrency"]

max_concurrency: int = int(os.environ.get("STACKCUBE_MAX_CONCURRENCY", "64"))
"""Most requests stackcube keeps in flight at once (env ``STACKCUBE_MAX_CONCURRENCY``)."""

header_bytes: int = int(os.environ.get("STACKCUBE_HEADER_BYTES", str(32 * 1024)))
"""Bytes asked for by the first ranged GET of a TIFF (env ``STACKCUBE_HEADER_BYTES``).

A Sentinel-2 10 m COG header (10980 x 10980, 512-pixel tiles, 5 overviews) takes about 7 KiB; GDAL asks
16 KiB first, async-tiff 32 KiB. A second GET costs a round trip, a few more KiB cost almost nothing.
"""
