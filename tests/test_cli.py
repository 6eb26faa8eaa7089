"""The stackcube command line: exit codes, one-line errors, the embedded demo."""

from __future__ import annotations

import json

import pytest

from stackcube.cli import main
from tests.conftest import CORPUS


def test_demo_says_it_builds_a_cube(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "build a cube (OUT/cube.icechunk)" in " ".join(capsys.readouterr().out.split())


def test_demo_runs_offline(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "identical to what was written" in out
    assert "EPSG:32735" in out
    assert "2 arrays: EPSG:32735 10 m x 4 dates x 4 bands" in out
    assert "snapshot " in out
    assert (tmp_path / "demo-cog.tif").is_file()
    assert (tmp_path / "quicklook.png").read_bytes().startswith(b"\x89PNG")
    assert main(["info", str(tmp_path / "cube.icechunk")]) == 0
    info = capsys.readouterr().out
    assert (
        "    EPSG32735_10m: 4 dates from 2020-06-01 to 2020-06-16 x 4 bands (B02, B03, B04, B08), "
        "512 x 512 px of 10 m in EPSG:32735, float32, 16 sources\n"
    ) in info
    assert f"  24 sources, under {(tmp_path / 'data').resolve().as_uri()}/\n" in info
    assert "  branches: main; tags: none" in info
    assert "{" not in info  # no dict reprs
    assert main(["log", str(tmp_path / "cube.icechunk")]) == 0
    assert "stackcube demo" in capsys.readouterr().out


@pytest.mark.corpus
def test_inspect_json(corpus, capsys) -> None:
    assert main(["inspect", str(CORPUS / "tiff" / "rio-tiler" / "cog.tif"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["header_requests"] == 1
    assert [i["role"] for i in doc["ifds"]] == ["image"] + ["overview"] * 4


@pytest.mark.parametrize(
    ("case", "line"),
    [
        ("epsg-code-with-its-own-unit-key", "  crs: EPSG:32633\n"),
        ("mercator-2sp-stdparallel", "  crs: an unnamed Mercator (variant B) CRS (WKT2)\n"),
        ("nsidc-legacy-polar-stereographic-stdparallel", '  crs: "NSIDC Sea Ice Polar Stereographic North" (WKT2)\n'),
        ("unknown-transformation-code", "  crs: none that GDAL reads from its GeoKeys\n"),
    ],
)
def test_inspect_names_the_crs(tmp_path, capsys, case, line) -> None:
    from tests.tiff.geokey_cases import HAND_MADE, write_geokeys

    keys, model = HAND_MADE[case]
    write_geokeys(tmp_path / "x.tif", keys, **model)
    assert main(["inspect", str(tmp_path / "x.tif")]) == 0
    assert line in capsys.readouterr().out


def test_errors_are_one_line_and_exit_non_zero(tmp_path, capsys) -> None:
    (tmp_path / "bad.tif").write_bytes(b"not a tiff" * 20)
    assert main(["inspect", str(tmp_path / "bad.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stackcube: error: ")
    assert "bad.tif" in err
    assert "\n" not in err
    assert main(["inspect", str(tmp_path / "missing.tif")]) == 2


def test_plan_command_prints_the_report(tmp_path, capsys) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path, dates=2, size=256)
    assert main(["plan", catalog, "--assets", "red", "nir", "B05", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 arrays: EPSG:32735 10 m x 2 dates x 2 bands")
    assert main(["plan", catalog, "--bbox", "0", "0", "1", "1", "--quiet"]) == 2
    assert "matched no items" in capsys.readouterr().err


def test_build_command_commits_and_tags(tmp_path, capsys) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = tmp_path / "cube.icechunk"
    args = ["build", catalog, "--assets", "red", "nir", "--repo", str(repo), "--tag", "v1", "--message", "first"]
    assert main([*args, "--quiet"]) == 0
    assert "EPSG32735_10m" in capsys.readouterr().out
    assert main(["log", str(repo)]) == 0
    assert "first" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "nothing-here")]) == 2
    assert "no Icechunk repository" in capsys.readouterr().err


def test_log_tells_a_big_builds_stages_as_one_line(tmp_path, capsys, monkeypatch) -> None:
    """A build in stages leaves its stages below its commit: ``log`` shows the first and counts the others, and no
    read opens one (part of the references: most of its chunks would read as nodata)."""
    import stackcube
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import VersionNotFoundError
    from stackcube.store import layout, open_repository
    from stackcube.store import write as write_module
    from stackcube.store.repo import STAGE_METADATA

    catalog = write_demo_catalog(tmp_path / "demo", dates=3, size=512)
    repo = tmp_path / "cube.icechunk"
    monkeypatch.setattr(write_module, "STAGE_REFS", 16)  # one date of the 10 m array a stage
    monkeypatch.setattr(write_module, "STAGE_ABOVE", 16)
    monkeypatch.setattr(layout, "MANIFEST_REFS", 16)
    assert main(["build", catalog, "--repo", str(repo), "--message", "staged", "--quiet"]) == 0
    history = list(open_repository(repo).ancestry(branch="main"))
    stages = [s for s in history if s.metadata == STAGE_METADATA]
    assert len(stages) >= 3
    capsys.readouterr()
    assert main(["log", str(repo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[-1] for line in lines] == [
        "staged",
        write_module.STAGE_MESSAGE,
        f"... and {len(stages) - 1} more stages of the same build",
        "Repository initialized",
    ]
    assert lines[1].startswith(stages[0].id)
    with pytest.raises(VersionNotFoundError, match=f"snapshot {stages[-1].id} of .* is a stage of a build"):
        stackcube.open_dataarray(repo, snapshot=stages[-1].id)  # part of the references: never read as a cube
    with pytest.raises(VersionNotFoundError, match="is a stage of a build"):
        stackcube.open_cube(repo, snapshot=stages[0].id)


def test_build_from_stac_geoparquet(tmp_path, capsys) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    from stackcube.demo import write_demo_catalog
    from stackcube.search import search_items

    _, items = search_items(write_demo_catalog(tmp_path / "demo", dates=2, size=256))
    to_parquet(parse_stac_items_to_arrow(items), tmp_path / "items.parquet")
    repo = tmp_path / "cube.icechunk"
    assert main(["build", str(tmp_path / "items.parquet"), "--assets", "red", "--repo", str(repo), "--quiet"]) == 0
    assert "2 dates" in capsys.readouterr().out
    pq.write_table(pa.table({"name": ["a"]}), tmp_path / "table.parquet")
    assert main(["plan", str(tmp_path / "table.parquet"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is Parquet but not stac-geoparquet" in err
    assert len(err.strip().splitlines()) == 1


def test_verify_names_a_changed_source_and_fix_reindexes_it(tmp_path, capsys) -> None:
    import os

    from stackcube.cli import EXIT_UNCHANGED
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo")
    repo = str(tmp_path / "cube.icechunk")
    assert main(["build", catalog, "--repo", repo, "--quiet"]) == 0
    assert main(["verify", repo, "--quiet"]) == 0
    assert "24 sources checked, 0 changed" in capsys.readouterr().out

    changed = next((tmp_path / "demo" / "data").glob("*/B04.tif"))
    data = changed.read_bytes()
    changed.write_bytes(data)  # same bytes, new file identity: a provider re-uploading
    stat = changed.stat()
    os.utime(changed, (stat.st_atime + 5, stat.st_mtime + 5))
    assert main(["verify", repo, "--quiet"]) == EXIT_UNCHANGED
    out = capsys.readouterr().out
    assert f"changed: {changed.resolve().as_uri()}" in out
    assert main(["verify", repo, "--fix", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"changed: {changed.parent.name}/B04" in out
    assert main(["verify", repo, "--quiet"]) == 0


def test_build_skip_failed_commits_the_rest_and_lists_the_failure(tmp_path, capsys) -> None:
    from stackcube.demo import write_demo_catalog
    from stackcube.store import open_repository

    catalog = write_demo_catalog(tmp_path / "demo")
    missing = next((tmp_path / "demo" / "data").glob("*/B08.tif"))
    missing.unlink()
    repo = str(tmp_path / "cube.icechunk")
    assert main(["build", catalog, "--repo", repo, "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["build", catalog, "--repo", repo, "--quiet", "--skip-failed"]) == 0
    assert "could not be read" in capsys.readouterr().out
    snapshot = next(iter(open_repository(repo).ancestry(branch="main")))
    (failure,) = snapshot.metadata["failed"]
    assert failure.startswith(f"{missing.parent.name}/B08: ")


@pytest.mark.corpus
def test_build_takes_the_band_metadata_options(tmp_path, capsys) -> None:
    from stackcube.store import read_metadata
    from tests.twins import corpus_items, redated, twin_items

    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    items = [item, redated(item, "2022-02-03T08:16:01Z", **{"s2:processing_baseline": "04.00"})]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=30, assets=["B04"])
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": twins}))
    assert main(["plan", str(catalog), "--assets", "B04", "--quiet"]) == 0
    assert "baselines before and from 04.00" in capsys.readouterr().out
    repo = tmp_path / "cube.icechunk"
    args = ["build", str(catalog), "--assets", "B04", "--repo", str(repo), "--quiet"]
    assert main([*args, "--harmonize", "sentinel-2", "--no-stac-metadata"]) == 0
    options = read_metadata(repo).options
    assert (options.harmonize, options.stac_metadata) == ("sentinel-2", False)
    with pytest.raises(SystemExit) as refused:  # argparse names the choices and exits with 2
        main([*args, "--harmonize", "landsat"])
    assert refused.value.code == 2


def test_every_error_exits_2_with_one_line_and_debug_adds_the_traceback(tmp_path, capsys, monkeypatch) -> None:
    missing = str(tmp_path / "nowhere.icechunk")
    assert main(["info", missing]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("stackcube: error: there is no Icechunk repository at")
    assert main(["--debug", "info", missing]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("stackcube: error: there is no Icechunk repository at")

    # an error stackcube did not foresee (provoked by hand: there is no known input that raises one)
    import stackcube.api

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("internal")

    monkeypatch.setattr(stackcube.api, "plan_cube", broken)
    assert main(["plan", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unexpected builtins.KeyError: 'internal' (run again with --debug for the traceback" in err


def test_modifier_names_an_importable_function(tmp_path, capsys) -> None:
    catalog = str(tmp_path / "none.json")
    assert main(["plan", catalog, "--modifier", "no_such_package.sign"]) == 2
    assert "cannot import no_such_package" in capsys.readouterr().err
    assert main(["plan", catalog, "--modifier", "json.no_such_function"]) == 2
    assert "no function 'no_such_function' in json" in capsys.readouterr().err


def test_build_and_refresh_on_a_process_pool_or_a_dask_scheduler(cluster, tmp_path, capsys) -> None:
    import stackcube
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = str(tmp_path / "cube.icechunk")
    assert main(["build", catalog, "--repo", repo, "--processes", "2", "--quiet"]) == 0
    assert "EPSG32735_10m" in capsys.readouterr().out
    assert main(["refresh", repo, "--scheduler", cluster.scheduler.address, "--quiet"]) == 3  # nothing new
    assert main(["build", catalog, "--repo", repo, "--processes", "0", "--quiet"]) == 2
    assert "--processes 0: give 1 or more" in capsys.readouterr().err
    with stackcube.settings.set(request_timeout=2.0):  # how long an unreachable scheduler is waited for (only it:
        # reaching the real one may take longer on a loaded machine)
        assert main(["build", catalog, "--repo", repo, "--scheduler", "tcp://127.0.0.1:9", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler tcp://127.0.0.1:9: cannot reach it" in err
    assert len(err.strip().splitlines()) == 1


def _stackcube() -> str:
    """The installed ``stackcube`` command (its entry point, ``run``, as users start it)."""
    import sys
    from pathlib import Path

    return str(Path(sys.executable).with_name("stackcube"))


def test_build_says_where_it_wrote(tmp_path, capsys, monkeypatch) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    monkeypatch.chdir(tmp_path)
    assert main(["build", catalog, "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {(tmp_path / 'cube.icechunk').resolve()}\nsnapshot ")


def test_a_misspelt_asset_fails_the_build_instead_of_making_a_smaller_cube(tmp_path, capsys) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = tmp_path / "cube.icechunk"
    assert main(["build", catalog, "--assets", "rde", "nir", "--repo", str(repo), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "stackcube: error: asset 'rde' not found in any of the 2 items the search found (neither an asset key nor "
        "an eo:bands common name); they have: B02 (blue), B03 (green), B04 (red), B08 (nir), B05 (rededge), "
        "B11 (swir16); did you mean 'red'?\n"
    )
    assert not repo.exists()


def test_an_asset_some_items_lack_is_a_one_line_warning(tmp_path, capsys) -> None:
    import pystac

    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    root = pystac.Catalog.from_file(catalog)
    item = sorted(root.get_items(recursive=True), key=lambda i: i.id)[1]
    del item.assets["B04"]
    item.save_object()
    assert main(["plan", catalog, "--assets", "red", "nir", "--quiet"]) == 0
    assert capsys.readouterr().err == (
        f"stackcube: warning: asset 'red' is missing from 1 of the 2 items found ({item.id}): the cube's red is "
        "empty where only it covers; the items have: B02 (blue), B03 (green), B04 (red), B08 (nir), B05 (rededge), "
        "B11 (swir16)\n"
    )


def test_repository_errors_name_the_command_to_run(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere.icechunk"
    assert main(["info", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"stackcube: error: there is no Icechunk repository at {missing}; build one with: stackcube build CATALOG "
        f"--repo {missing}\n"
    )
    import stackcube
    from stackcube.errors import RepositoryError

    with pytest.raises(RepositoryError) as raised:  # in Python, the Python call
        stackcube.open_cube(missing)
    assert str(raised.value).endswith(f"; build one with stackcube.build_cube(catalog, repo={str(missing)!r})")


def test_info_and_log_take_a_tag(tmp_path, capsys) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = str(tmp_path / "cube.icechunk")
    assert main(["build", catalog, "--repo", repo, "--tag", "first", "--message", "one", "--quiet"]) == 0
    assert main(["build", catalog, "--repo", repo, "--assets", "red", "--message", "two", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", repo, "--tag", "first"]) == 0
    info = capsys.readouterr().out
    assert info.startswith(f"{repo}: tag first at snapshot ")
    assert "4 bands (B02, B03, B04, B08)" in info  # the tagged build, not the branch's one-band cube
    assert main(["log", repo, "--tag", "first"]) == 0
    assert [line.split("  ")[-1] for line in capsys.readouterr().out.splitlines()][:1] == ["one"]
    assert main(["log", repo]) == 0
    assert [line.split("  ")[-1] for line in capsys.readouterr().out.splitlines()][:2] == ["two", "one"]
    assert main(["log", repo, "--tag", "second"]) == 2
    assert capsys.readouterr().err == (
        f"stackcube: error: {repo} has no tag 'second' (its branches: main; its tags: first)\n"
    )


def test_a_host_without_byte_ranges_is_one_line_naming_it(tmp_path, capsys) -> None:
    from stackcube.demo import write_demo_catalog
    from tests.services.host import run_host

    write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    with run_host(tmp_path / "demo", ranges=False) as host:  # as python -m http.server
        catalog = f"{host.url}/catalog/catalog.json"
        assert main(["build", catalog, "--repo", str(tmp_path / "cube.icechunk"), "--quiet"]) == 2
        assert main(["inspect", f"{host.url}/data/DEMO_T35MNM_20200601/B04.tif"]) == 2
    where = host.url.removeprefix("http://")
    reason = (
        f"the host {where} does not serve byte ranges (it answers a Range request with the whole file), and "
        "stackcube reads a TIFF's header and tiles by ranged GETs; serve the files from a host that honours Range "
        "requests (nginx, Apache, S3, Azure Blob; python -m http.server does not)"
    )
    assert capsys.readouterr().err.splitlines() == [
        f"stackcube: error: all 12 sources failed: 12 x {reason}",
        f"stackcube: error: {reason}",
    ]


def test_a_datetime_it_cannot_read_lists_the_forms_it_can(tmp_path, capsys) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    assert main(["plan", catalog, "--datetime", "06/2020", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "stackcube: error: datetime '06/2020' is not a date, time or interval stackcube can read (invalid datetime "
        "component: 06); give a year (2020), a month (2020-06), a day (2020-06-01), a time (2020-06-01T10:30, "
        "2020-06-01T10:30:00Z), or an interval of two of them joined by / (2020-06-01/2020-07-31; .. for an open "
        "end: 2020-06-01/..)\n"
    )
    assert main(["plan", catalog, "--datetime", "2020-06-01T00:00/2020-06-10T00:00", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("2 arrays: EPSG:32735 10 m x 2 dates x 4 bands")


def test_a_closed_pipe_is_a_quiet_exit(tmp_path) -> None:
    import subprocess

    from stackcube.cli import EXIT_BROKEN_PIPE
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = str(tmp_path / "cube.icechunk")
    assert main(["build", catalog, "--repo", repo, "--quiet"]) == 0
    # the reader goes away before the command writes a byte: every write fails
    proc = subprocess.Popen([_stackcube(), "info", repo], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (EXIT_BROKEN_PIPE, b"")
    # as users write it: whether the pipe closed before or after the last write, nothing on stderr
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{_stackcube()}' info '{repo}' | head -1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.startswith(f"{repo}: branch main at snapshot ")
    assert done.stderr == ""
    assert done.returncode in {0, EXIT_BROKEN_PIPE}  # as any shell tool: 141 when a write found the reader gone


def test_ctrl_c_says_nothing_was_committed(tmp_path) -> None:
    import signal
    import subprocess

    from stackcube.cli import EXIT_INTERRUPTED
    from stackcube.demo import write_demo_catalog
    from tests.services.host import run_host

    write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = tmp_path / "cube.icechunk"
    with run_host(tmp_path / "demo", hold=".tif") as host:
        catalog = f"{host.url}/catalog/catalog.json"
        command = [_stackcube(), "build", catalog, "--repo", str(repo), "--quiet"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                assert host.held.wait(120), "the build never asked for a TIFF"  # reading headers: no commit yet
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=120)
            finally:
                proc.kill()  # (when it did not stop) its pipes are closed with the block, not left to the next test
    assert (proc.returncode, out) == (EXIT_INTERRUPTED, "")
    assert err == f"stackcube: interrupted; nothing was committed (branch main of {repo} is where it was)\n"
    assert not repo.exists()  # a build makes its repository once its headers are read


def test_ctrl_c_after_the_commit_names_the_snapshot(tmp_path, capsys, monkeypatch) -> None:
    """Ctrl-C as the summary is printed: the commit was made, and the message says so (the interrupt is simulated:
    no signal can be timed to land between the commit and the print)."""
    import stackcube.api
    from stackcube.cli import EXIT_INTERRUPTED
    from stackcube.demo import write_demo_catalog
    from stackcube.store import open_repository

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = tmp_path / "cube.icechunk"
    assert main(["build", catalog, "--repo", str(repo), "--assets", "red", "--quiet"]) == 0
    real = stackcube.api.build_cube

    def build_then_interrupt(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(stackcube.api, "build_cube", build_then_interrupt)
    capsys.readouterr()
    assert main(["build", catalog, "--repo", str(repo), "--quiet"]) == EXIT_INTERRUPTED
    tip = open_repository(repo).lookup_branch("main")
    assert (
        capsys.readouterr().err
        == f"stackcube: interrupted after the commit: branch main of {repo} is at snapshot {tip}\n"
    )
    assert len(list(open_repository(repo).ancestry(branch="main"))) == 3  # initialized, and both builds'


def test_catalog_metadata_that_cannot_be_right_names_the_options_of_the_command(tmp_path, capsys) -> None:
    """Several sources fail alike: their remedy is said once, in the command line's words."""
    import pystac

    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    root = pystac.Catalog.from_file(catalog)
    for item in root.get_items(recursive=True):
        item.assets["B04"].extra_fields["raster:bands"] = [{"scale": 0}]
        item.save_object()
    assert main(["plan", catalog, "--assets", "red", "nir", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stackcube: error: 2 of 4 sources could not be read: 1 x DEMO_T35MNM_20200601/B04: a scale ")
    assert err.endswith(
        "; fix the catalog, or build with --no-stac-metadata (the files' own nodata, scale and offset), or pass "
        "--skip-failed to leave those sources out\n"
    )
    assert err.count("--no-stac-metadata") == 1
    assert "stac_metadata=False" not in err
    assert main(["plan", catalog, "--assets", "red", "nir", "--quiet", "--no-stac-metadata"]) == 0  # the advice


def test_ctrl_c_while_a_new_repository_is_written_says_nothing_was_committed(tmp_path, capsys, monkeypatch) -> None:
    """The repository is made, with Icechunk's empty first snapshot, before the references are written: that is
    no commit of the build's (the interrupt is simulated, in the middle of writing references)."""
    from stackcube.cli import EXIT_INTERRUPTED
    from stackcube.demo import write_demo_catalog
    from stackcube.store import write

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(write, "set_refs", interrupted)
    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = tmp_path / "cube.icechunk"
    assert main(["build", catalog, "--repo", str(repo), "--quiet"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == (
        f"stackcube: interrupted; nothing was committed (branch main of {repo} holds only the empty snapshot of a "
        "new repository)\n"
    )
    assert repo.exists()
    monkeypatch.undo()
    assert main(["build", catalog, "--repo", str(repo), "--quiet"]) == 0
    monkeypatch.setattr(write, "set_refs", interrupted)
    capsys.readouterr()
    assert main(["build", catalog, "--repo", str(repo), "--quiet"]) == EXIT_INTERRUPTED  # a cube there already
    assert capsys.readouterr().err == (
        f"stackcube: interrupted; nothing was committed (branch main of {repo} is where it was)\n"
    )


@pytest.mark.corpus
@pytest.mark.network
def test_a_catalog_key_is_given_again_at_refresh_and_printed_nowhere(stac_api, tmp_path, capsys) -> None:
    """The command line as a scheduled job uses it: build with the key in the catalog URL, refresh with
    ``--catalog`` (or ``--header``); without either, one line saying what to pass. No output holds the key."""
    from stackcube.cli import EXIT_ERROR, EXIT_UNCHANGED
    from tests.test_api import run_keyed_catalog

    repo = str(tmp_path / "cube.icechunk")
    with run_keyed_catalog(stac_api.url, tmp_path) as catalog:
        search = ["--collections", "sentinel-2-l2a", "--assets", "B04", "--datetime", "2020-07"]
        search += ["--bbox", "27.0", "-8.2", "27.4", "-7.8"]
        assert main(["build", catalog.with_key, "--repo", repo, *search]) == 0
        out, err = capsys.readouterr()
        assert "snapshot " in out
        printed = [out, err]

        assert main(["refresh", repo, "--catalog", catalog.with_key, "--full-search"]) == EXIT_UNCHANGED
        printed.extend(capsys.readouterr())
        assert "nothing changed" in printed[-2]
        header = f"Ocp-Apim-Subscription-Key: {catalog.key}"
        assert main(["refresh", repo, "--header", header, "--full-search", "--quiet"]) == EXIT_UNCHANGED
        printed.extend(capsys.readouterr())

        assert main(["refresh", repo, "--quiet"]) == EXIT_ERROR
        out, err = capsys.readouterr()
        printed.extend((out, err))
        assert err.startswith(f"stackcube: error: {catalog.url}/: the catalog refused the request (HTTP 401)")
        assert f"stackcube refresh --catalog URL {repo} with URL {catalog.url}/ and its key" in err
        assert "--header 'NAME: VALUE'" in err
        assert main(["refresh", repo, "--catalog", f"{catalog.url}/", "--quiet"]) == EXIT_ERROR  # still no key
        printed.extend(capsys.readouterr())

        for command in (["info", repo], ["log", repo], ["verify", repo, "--quiet"]):
            assert main(command) == 0
            printed.extend(capsys.readouterr())
        assert main(["--debug", "refresh", repo, "--quiet"]) == EXIT_ERROR  # the traceback too
        printed.extend(capsys.readouterr())
    assert [text for text in printed if catalog.url in text]  # the outputs name the catalog
    assert not [text for text in printed if catalog.key in text]


def test_info_describes_a_union_and_each_of_its_members(tmp_path, capsys) -> None:
    """The tree open_cube gives lists a union's members without opening them; info still describes every one."""
    import stackcube
    from stackcube.demo import write_demo_offset_catalog

    repo = tmp_path / "cube.icechunk"
    built = stackcube.build_cube(write_demo_offset_catalog(tmp_path / "demo"), repo=repo, progress=False)
    (union,) = built.plan.unions
    assert main(["info", str(repo)]) == 0
    out = capsys.readouterr().out
    assert f"{union.name}: a union of {len(union.members)} grids" in out
    for member in union.members:
        assert f"    {member}: " in out
