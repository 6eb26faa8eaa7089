"""Credentials for reading cubes whose sources need them, given at open and never stored.

:func:`planetary_computer` reads cubes built from Microsoft's Planetary Computer: its COGs live in Azure Blob
Storage behind SAS tokens that expire within the hour, which a cube never stores (it keeps ``az://`` references).
At open, each of the cube's Azure containers gets a fresh token from Planetary Computer's token endpoint, through
the ``planetary-computer`` package (stackcube's ``planetary-computer`` extra), so its settings apply: the
endpoint (``PC_SDK_SAS_URL``) and a subscription key (``PC_SDK_SUBSCRIPTION_KEY``).

Examples
--------
>>> import planetary_computer, stackcube                                                    # doctest: +SKIP
>>> from stackcube.credentials import planetary_computer as pc_credentials                  # doctest: +SKIP
>>> stackcube.build_cube("https://planetarycomputer.microsoft.com/api/stac/v1", bbox, "2024-06",
...                      collections=["sentinel-2-l2a"], modifier=planetary_computer.sign_inplace,
...                      repo="s2.icechunk")                                                  # doctest: +SKIP
>>> stackcube.open_dataarray("s2.icechunk", credentials=pc_credentials())                  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from stackcube._remedies import install_extra
from stackcube.errors import MissingExtraError

__all__ = ["ContainerToken", "PlanetaryComputer", "planetary_computer"]


@dataclass(frozen=True)
class PlanetaryComputer:
    """SAS tokens per Azure container from Planetary Computer's token endpoint, asked when a cube is opened and
    again whenever the last one expires (a token lasts about an hour; long reads go on with fresh ones)."""

    def for_container(self, prefix: str, account: str | None) -> Any:
        """The credential for container prefix ``az://CONTAINER/`` on storage ``account``; None for any other."""
        parsed = urlparse(prefix)
        if parsed.scheme != "az" or not account:
            return None
        return {"get_sas_token": ContainerToken(account, parsed.netloc)}


@dataclass(frozen=True)
class ContainerToken:
    """Asks Planetary Computer's token endpoint for a container's SAS token: ``(token, expiry)``. Picklable, so
    Icechunk can ask again from its own runtime when the token expires."""

    account: str
    container: str

    def __call__(self) -> tuple[str, datetime]:
        from planetary_computer import sas

        token = sas.get_token(self.account, self.container)
        return token.token, token.expiry


def planetary_computer() -> PlanetaryComputer:
    """Credentials for cubes of Planetary Computer data: pass as ``credentials=`` to :func:`stackcube.open_cube`,
    :func:`stackcube.open_dataarray`, ``stack(repo=...)`` or ``to_grid``."""
    if importlib.util.find_spec("planetary_computer") is None:
        # said now: Icechunk would ask for the first token from its own runtime, far from this call
        msg = f"Planetary Computer credentials need its package: {install_extra('planetary-computer')}"
        raise MissingExtraError(msg)
    return PlanetaryComputer()
