"""verify_cube: every source asked whether it is still the object indexed; with ``fix``, the changed ones indexed
again and the gone ones left out. (``refresh_cube(check_etags=True)``, which verifies first, and the tests that
run a refresh and a verify together: tests/test_refresh.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import stackcube
from stackcube.cli import EXIT_UNCHANGED, main
from tests.test_refresh import _touch


def test_check_etags_reindexes_the_changed_and_names_the_gone_and_verify_fix_does_both(demo_cube, capsys) -> None:

    catalog, repo, _ = demo_cube
    data = Path(catalog).parent.parent / "data"
    days = sorted(p.name for p in data.iterdir())
    replaced, gone = data / days[0] / "B03.tif", data / days[1] / "B04.tif"
    _touch(replaced)
    gone.unlink()
    report = stackcube.refresh_cube(repo, check_etags=True, progress=False)  # not skipping: the gone one stays
    assert report.committed
    assert report.changed == (f"{days[0]}/B03",)
    assert report.notes[-1] == (
        f"1 source no longer exists ({gone.resolve().as_uri()}), left as indexed: with on_error='skip' "
        "(--skip-failed), check_etags reads it again, indexing where the catalog now points or leaving it out"
    )
    assert main(["verify", str(repo), "--quiet"]) == EXIT_UNCHANGED  # still there, still gone
    assert main(["verify", str(repo), "--fix", "--quiet"]) == 0  # read again, and left out
    assert f"failed: {days[1]}/B04: " in capsys.readouterr().out
    assert main(["verify", str(repo), "--quiet"]) == 0
    cube = stackcube.open_dataarray(repo, "EPSG32735_10m", chunks=False)
    assert np.isnan(cube.sel(band="B04").isel(time=1).values).all()
