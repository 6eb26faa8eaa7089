"""The installed version of stackcube (own module, so stages can import it without importing the package API)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stackcube")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
    __version__ = "0+unknown"
