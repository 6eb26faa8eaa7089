"""Process-wide settings, read once from the environment and changeable at run time.

``max_concurrency`` is the one cap on requests in flight (header reads, HEADs); ``header_bytes`` is the size
of the first ranged GET of a TIFF, large enough to hold a whole COG header in one request. ``retries``,
``retry_deadline`` and ``request_timeout`` bound how long a failing request is tried (searches, header reads,
HEADs): 5xx, 429, timeouts and dropped connections are retried with exponential backoff and full jitter.

Examples
--------
>>> import stackcube.settings
>>> stackcube.settings.max_concurrency = 16
"""

from __future__ import annotations

import os

__all__ = ["header_bytes", "max_concurrency", "request_timeout", "retries", "retry_deadline"]

max_concurrency: int = int(os.environ.get("STACKCUBE_MAX_CONCURRENCY", "64"))
"""Most requests stackcube keeps in flight at once (env ``STACKCUBE_MAX_CONCURRENCY``)."""

header_bytes: int = int(os.environ.get("STACKCUBE_HEADER_BYTES", str(32 * 1024)))
"""Bytes asked for by the first ranged GET of a TIFF (env ``STACKCUBE_HEADER_BYTES``).

A Sentinel-2 10 m COG header (10980 x 10980, 512-pixel tiles, 5 overviews) takes about 7 KiB; GDAL asks
16 KiB first, async-tiff 32 KiB. A second GET costs a round trip, a few more KiB cost almost nothing.
"""

retries: int = int(os.environ.get("STACKCUBE_RETRIES", "5"))
"""Retries of one request after a transient failure (env ``STACKCUBE_RETRIES``); 0 disables them."""

retry_deadline: float = float(os.environ.get("STACKCUBE_RETRY_DEADLINE", "120"))
"""Seconds after which a request is not retried again, however many retries are left."""

request_timeout: float = float(os.environ.get("STACKCUBE_REQUEST_TIMEOUT", "30"))
"""Seconds one request may take (connection, headers and body) before it counts as failed."""
