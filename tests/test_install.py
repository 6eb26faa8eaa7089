"""One install does the whole job: the package without extras, installed as users install it (at the versions
uv.lock pins), builds a cube and warps it, with no test or benchmark package beside it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, require

_WARP = """
import importlib.util, sys, warnings
from pathlib import Path
import numpy as np
import stackcube
from stackcube.demo import write_demo_catalog
from stackcube.errors import ResamplingWarning

here = Path(sys.argv[1])
catalog = write_demo_catalog(here / "demo", dates=2, size=256)
cube = stackcube.build_cube(catalog, repo=here / "cube.icechunk", progress=False)
warped = stackcube.to_grid(cube, crs="EPSG:4326", resolution=0.0005)
assert np.isfinite(warped.sel(band="red").isel(time=0).values).mean() > 0.5
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ResamplingWarning)
    stacked = stackcube.stack(catalog, assets=["red"], epsg=4326, resolution=0.0005)
assert np.isfinite(stacked.isel(time=0).values).mean() > 0.5
print("test packages:", [m for m in ("pytest", "distributed", "stackstac") if importlib.util.find_spec(m)])

# the optional parts, not installed here, each name the extra that installs them
from stackcube.credentials import planetary_computer
from stackcube.errors import MissingExtraError
for call in (lambda: planetary_computer(), lambda: stackcube.plan_cube(str(here / "items.parquet"))):
    try:
        call()
    except MissingExtraError as exc:
        print(exc)
"""


def test_the_package_without_extras_builds_and_warps(tmp_path) -> None:
    env = tmp_path / "venv"
    uv = ROOT / ".venv-tools" / "bin" / "uv"  # the Makefile's, whose cache `make test` filled
    require(uv.is_file(), f"{uv} is missing: `make test` installs it (the Makefile pins uv's version)")
    # as `make demo` installs: the lock's versions of the package's own dependencies (a wheel, not editable);
    # offline: every wheel is in uv's cache once `make test` has installed the (larger) test set-up
    sync = ["sync", "--project", ROOT, "--locked", "--offline", "--no-default-groups", "--no-editable", "--quiet"]
    sync += ["--reinstall-package", "stackcube"]  # built from this tree (uv keys its cache on pyproject.toml)
    subprocess.run(
        [uv, *sync, "--python", sys._base_executable],
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(env), "UV_PYTHON_DOWNLOADS": "never"},
        check=True,
    )
    done = subprocess.run(
        [env / "bin" / "python", "-c", _WARP, tmp_path], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "test packages: []",
        "Planetary Computer credentials need its package: install stackcube's 'planetary-computer' extra (from a "
        "clone of stackcube: pip install '.[planetary-computer]')",
        f"{tmp_path / 'items.parquet'}: reading stac-geoparquet needs duckdb, pyarrow and rustac: install "
        "stackcube's 'geoparquet' extra (from a clone of stackcube: pip install '.[geoparquet]')",
    ]
    scheduled = subprocess.run(
        [env / "bin" / "stackcube", "build", tmp_path / "demo" / "catalog" / "catalog.json", "--scheduler", "tcp://x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (scheduled.returncode, scheduled.stderr) == (
        2,
        "stackcube: error: --scheduler needs dask.distributed: install stackcube's 'distributed' extra (from a clone "
        "of stackcube: pip install '.[distributed]')\n",
    )
