"""verify_cube: every source asked whether it is still the object indexed; with ``fix``, the changed ones indexed
again and the gone ones left out. (``refresh_cube(check_etags=True)``, which verifies first, and the tests that
run a refresh and a verify together: tests/test_refresh.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.network
def test_replicas_with_one_etag_and_times_of_their_own_verify_unchanged(tmp_path) -> None:
    """Copies behind one name answer in turn with the content's ETag and modification times of their own: the same
    strong ETag is the same version (as a header read judges it), so verify finds nothing changed on every run."""
    from tests.services.host import run_host
    from tests.twins import series

    with run_host(tmp_path / "served", replicas=2) as host:
        items = series(host.root, host.url, 3)
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(items, repo=repo, progress=False)
        for _ in range(3):  # each HEAD answered by the next copy
            checked, _ = stackcube.verify_cube(repo, progress=False)
            assert checked.checked == 3
            assert checked.ok, checked
