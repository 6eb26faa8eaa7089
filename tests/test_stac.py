"""stackcube.to_stac: a cube as a STAC Collection, validated against the schemas of the extensions it declares, read
back through pystac and opened from its Icechunk asset (by stackcube's engine, and by xpystac where it can)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import icechunk
import numpy as np
import pystac
import pytest
import xarray as xr
from pystac.extensions.datacube import DatacubeExtension, HorizontalSpatialDimension
from pystac.validation.stac_validator import JsonSchemaSTACValidator

import stackcube
from stackcube.cli import main
from stackcube.errors import SignedHrefError
from stackcube.settings import AzureSettings, Settings
from stackcube.stac import CUBE_ASSET, EXTENSIONS, ICECHUNK, STORAGE, _scheme, merged_bbox, to_stac
from stackcube.store import read_metadata

SCHEMAS = Path(__file__).parent / "stac_schemas"


@pytest.fixture(scope="module")
def validator() -> JsonSchemaSTACValidator:
    """pystac's JSON-schema validator with the extensions' schemas from ``tests/stac_schemas`` (CI has no network;
    pystac ships the core schemas itself)."""
    checker = JsonSchemaSTACValidator()
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        checker.schema_cache[schema["$id"]] = schema
    return checker


def _valid(collection: pystac.Collection, validator: JsonSchemaSTACValidator) -> list[str]:
    """The schemas ``collection`` validated against (pystac raises on the first it breaks)."""
    return pystac.validation.validate(collection, validator=validator)


def test_every_declared_extension_has_an_offline_schema(validator) -> None:
    assert set(EXTENSIONS) <= set(validator.schema_cache)


def _with_storage(d: dict, **fields) -> None:
    """``d`` declaring the storage extension, with ``fields`` at its top level."""
    d["stac_extensions"].append(STORAGE)
    d.update(fields)


AWS = {"type": "aws-s3", "platform": "https://{bucket}.s3.{region}.amazonaws.com", "bucket": "cubes"}


@pytest.mark.parametrize(
    ("break_it", "extension"),
    [
        (lambda d: d["cube:dimensions"]["EPSG32735_10m/x"].pop("axis"), "datacube"),
        (lambda d: d["cube:dimensions"]["EPSG32735_10m/time"].update(extent=["2020-06-01T00:00:00Z"]), "datacube"),
        (lambda d: d["cube:variables"]["EPSG32735_10m"].update(type="band"), "datacube"),
        (lambda d: d["cube:variables"]["EPSG32735_10m"].pop("dimensions"), "datacube"),
        (lambda d: d["cube:dimensions"]["EPSG32735_10m/band"].pop("values"), "datacube"),
        (lambda d: d["assets"][CUBE_ASSET].pop("vrt:hrefs"), "virtual-assets"),
        (lambda d: d["assets"][CUBE_ASSET]["vrt:hrefs"][0].pop("key"), "virtual-assets"),
        (lambda d: d["assets"][CUBE_ASSET].update(version=20), "version"),
        (_with_storage, "storage"),  # declared, and no storage:schemes
        (lambda d: _with_storage(d, **{"storage:schemes": {"s3": AWS}}), "storage"),  # aws-s3 without its region
        (
            lambda d: _with_storage(d, **{"storage:schemes": {"s3": {**AWS, "region": "us-west-2", "platform": "s3"}}}),
            "storage",
        ),
        (lambda d: _with_storage(d, **{"storage:schemes": {"s3": {"type": "custom-s3"}}}), "storage"),  # no platform
        (
            lambda d: (
                _with_storage(d, **{"storage:schemes": {"s3": {**AWS, "region": "us-west-2"}}})
                or d["assets"][CUBE_ASSET].update({"storage:refs": "s3"})
            ),
            "storage",
        ),
    ],
)
def test_the_schemas_refuse_what_their_extension_forbids(demo_cube, validator, break_it, extension) -> None:
    """The offline schemas can fail: each breaks on a field its extension requires or types."""
    _, repo, _ = demo_cube
    data = to_stac(repo).to_dict(include_self_link=False)
    broken = copy.deepcopy(data)
    break_it(broken)
    pystac.validation.validate_dict(data, validator=validator)
    with pytest.raises(pystac.STACValidationError) as caught:
        pystac.validation.validate_dict(broken, validator=validator)
    assert extension in str(caught.value)


def test_a_well_formed_storage_scheme_passes_the_storage_schema(demo_cube, validator) -> None:
    """The refusals above are of what is wrong, not of the storage extension itself."""
    _, repo, _ = demo_cube
    data = to_stac(repo).to_dict(include_self_link=False)
    _with_storage(data, **{"storage:schemes": {"s3": {**AWS, "region": "us-west-2"}}})
    data["assets"][CUBE_ASSET]["storage:refs"] = ["s3"]
    assert STORAGE in pystac.validation.validate_dict(data, validator=validator)


def test_a_cube_is_a_valid_collection_of_its_extent_dimensions_and_icechunk_asset(demo_cube, validator) -> None:
    """The demo cube (two arrays on one UTM zone, four dates; the 20 m one with other bands) against its own readers
    and GDAL's bounds."""
    import rasterio.warp

    _, repo, cube = demo_cube
    collection = to_stac(repo, id="demo", title="Demo")
    assert set(_valid(collection, validator)) >= set(EXTENSIONS) - {STORAGE}
    assert STORAGE not in collection.stac_extensions  # on local disk: no object store to describe
    data = collection.to_dict(include_self_link=False)
    assert "storage:schemes" not in data
    again = pystac.Collection.from_dict(copy.deepcopy(data))
    assert again.to_dict(include_self_link=False) == data  # round-trips through pystac

    cubes = DatacubeExtension.ext(again)
    assert set(cubes.variables) == {"EPSG32735_10m", "EPSG32735_20m"}
    dims = cubes.dimensions
    boxes = []
    for name, variable in cubes.variables.items():
        assert variable.dimensions == [f"{name}/time", f"{name}/band", f"{name}/y", f"{name}/x"]
        da = stackcube.open_dataarray(repo, name, chunks=False)
        assert dims[f"{name}/band"].values == da["band"].to_numpy().tolist()  # each array's own bands
        times = da["time"].to_numpy()
        assert dims[f"{name}/time"].values == [f"{t}Z" for t in np.datetime_as_string(times, unit="s")]
        assert dims[f"{name}/time"].extent == [f"{np.datetime_as_string(t, unit='s')}Z" for t in (times[0], times[-1])]
        for axis in ("x", "y"):
            dim = dims[f"{name}/{axis}"]
            assert isinstance(dim, HorizontalSpatialDimension)
            assert dim.reference_system == 32735
            coords = da[axis].to_numpy()
            step = float(coords[1] - coords[0])
            assert dim.step == step
            assert dim.extent == [coords.min() - abs(step) / 2, coords.max() + abs(step) / 2]
        x, y = dims[f"{name}/x"].extent, dims[f"{name}/y"].extent
        boxes.append(rasterio.warp.transform_bounds("EPSG:32735", "EPSG:4326", x[0], y[0], x[1], y[1]))
    assert dims["EPSG32735_20m/band"].values == ["B05", "B11"]
    bbox = collection.extent.spatial.bboxes
    assert len(bbox) == 3  # the whole, then each array's
    for got, expected in zip(bbox[1:], boxes, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-9)  # pyproj's bounds are GDAL's
    whole = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    np.testing.assert_allclose(bbox[0], whole, atol=1e-9)
    times = stackcube.open_dataarray(repo, "EPSG32735_10m", chunks=False)["time"].to_numpy()
    start, end = collection.extent.temporal.intervals[0]
    assert np.datetime64(start.replace(tzinfo=None)) == times.min()
    assert np.datetime64(end.replace(tzinfo=None)) == times.max()
    assert collection.summaries.lists["platform"] == ["demo-sat"]
    assert "/" not in collection.description.split("(")[0]  # no path of the builder's disk is published

    asset = collection.assets[CUBE_ASSET]
    assert asset.media_type == ICECHUNK
    assert asset.href == str(Path(repo).resolve())
    assert asset.roles == ["data", "references", "virtual", "latest-version"]
    assert asset.extra_fields["version"] == cube.snapshot_id
    metadata = read_metadata(repo)
    linked = [collection.assets[ref["key"]] for ref in asset.extra_fields["vrt:hrefs"]]
    assert [a.href for a in linked] == list(metadata.containers)
    assert all(a.media_type is None and "data" not in (a.roles or []) for a in linked)  # folders, not files to open
    assert all(ref["href"] == f"#/assets/{ref['key']}" for ref in asset.extra_fields["vrt:hrefs"])

    for name in cubes.variables:  # what the asset says is enough to open each array
        opened = xr.open_dataset(
            asset.href, engine="stackcube", group=name, snapshot=asset.extra_fields["version"], chunks=None
        )["data"]
        xr.testing.assert_identical(opened.rename(name), stackcube.open_dataarray(repo, name, chunks=False))


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        ([[-10, 0, 10, 1], [20, -1, 30, 2]], [-10, -1, 30, 2]),
        ([[175.11, 62.02, -178.92, 63.12], [177.0, 62.5, 178.98, 63.13]], [175.11, 62.02, -178.92, 63.13]),
        ([[170, 0, 175, 1], [-175, 0, -170, 1]], [170, 0, -170, 1]),  # across the antimeridian is smaller
        ([[-170, 0, 0, 1], [10, 0, 170, 1]], [-170, 0, 170, 1]),  # around the other way is smaller
        ([[179, 0, -179, 1]], [179, 0, -179, 1]),
        ([[-180, 0, 0, 1], [0, 0, 180, 1]], [-180, 0, 180, 1]),
        ([[100, 0, -100, 1], [-120, 0, 120, 1]], [-180, 0, 180, 1]),  # every longitude
    ],
)
def test_the_whole_bbox_is_the_smallest_holding_each_across_the_antimeridian_too(boxes, expected) -> None:
    assert merged_bbox(boxes) == expected


def test_a_tagged_version_is_the_tag_and_not_the_latest(demo_cube, validator) -> None:
    catalog, repo, cube = demo_cube
    icechunk.Repository.open(icechunk.local_filesystem_storage(str(repo))).create_tag("june", cube.snapshot_id)
    newer = stackcube.build_cube(catalog, repo=repo, progress=False)  # main moves on
    assert newer.snapshot_id != cube.snapshot_id
    tagged = to_stac(repo, tag="june")
    latest = to_stac(repo)
    _valid(tagged, validator)
    assert tagged.assets[CUBE_ASSET].extra_fields["version"] == "june"
    assert "latest-version" not in tagged.assets[CUBE_ASSET].roles
    assert latest.assets[CUBE_ASSET].extra_fields["version"] == newer.snapshot_id
    by_id = to_stac(repo, snapshot=cube.snapshot_id)
    assert by_id.assets[CUBE_ASSET].extra_fields["version"] == cube.snapshot_id
    assert "latest-version" not in by_id.assets[CUBE_ASSET].roles


def test_no_credential_is_published_and_a_storage_needs_its_href(demo_cube) -> None:
    _, repo, _ = demo_cube
    with pytest.raises(SignedHrefError, match=r"\(sig\)") as caught:
        to_stac(repo, href="https://host.example/cube.icechunk?sig=s3cr3t&se=2030")
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(SignedHrefError, match="user:password@"):
        to_stac(repo, href="s3://me:s3cr3t@bucket/cube.icechunk")
    storage = icechunk.local_filesystem_storage(str(repo))
    with pytest.raises(ValueError, match="pass href="):
        to_stac(storage)
    described = to_stac(storage, href="s3://bucket/cubes/demo.icechunk")
    assert described.assets[CUBE_ASSET].href == "s3://bucket/cubes/demo.icechunk"
    assert described.id == "demo"
    with pytest.raises(TypeError, match="'chunks'"):
        to_stac(repo, chunks=False)
    assert to_stac(repo, href="cube.icechunk").assets[CUBE_ASSET].href == "cube.icechunk"  # relative, as given


def test_object_stores_are_storage_schemes() -> None:
    """S3 on AWS, S3 elsewhere (MinIO, moto) and Azure Blob Storage, as the storage extension v2 spells them."""
    aws = Settings()
    schemes: dict[str, dict] = {}
    assert _scheme("s3://landsat-cubes/c8/", aws, None, schemes) == ["aws-s3-landsat-cubes"]
    assert schemes["aws-s3-landsat-cubes"] == {
        "type": "aws-s3",
        "platform": "https://{bucket}.s3.{region}.amazonaws.com",
        "bucket": "landsat-cubes",
        "region": aws.s3.region,  # the region stackcube reads S3 with
    }
    paid = dataclasses.replace(aws, s3=dataclasses.replace(aws.s3, requester_pays=True))
    assert _scheme("s3://usgs-landsat/collection02/", paid, None, schemes) == ["aws-s3-usgs-landsat"]
    assert schemes["aws-s3-usgs-landsat"]["requester_pays"] is True
    minio = dataclasses.replace(aws, s3=dataclasses.replace(aws.s3, endpoint="http://127.0.0.1:9000/"))
    assert _scheme("s3://b/p/", minio, None, schemes) == ["custom-s3-b"]
    assert schemes["custom-s3-b"]["platform"] == "http://127.0.0.1:9000"  # the endpoint, as custom-s3 has it
    assert _scheme("az://sentinel2-l2/", aws, "sentinel2l2a01", schemes) == ["ms-azure-sentinel2l2a01"]
    assert schemes["ms-azure-sentinel2l2a01"] == {
        "type": "ms-azure",
        "platform": "https://{account}.blob.core.windows.net",
        "account": "sentinel2l2a01",
    }
    emulated = dataclasses.replace(aws, azure=AzureSettings(emulator="http://127.0.0.1:10000"))
    assert _scheme("az://c/", emulated, "devstoreaccount1", {}) is None  # Azurite is not Azure's platform
    assert _scheme("https://host.example/cogs/", aws, None, schemes) is None  # its own whole address
    assert _scheme("/data/cogs/", aws, None, schemes) is None


@pytest.mark.network
def test_a_cube_on_s3_is_described_for_xpystac_which_opens_its_root(s3, tmp_path, validator) -> None:
    """xpystac 0.5 opens an Icechunk asset from its storage scheme, version and ``vrt:hrefs``. Two limits of its own
    keep it from a cube's values, said here and in the README:

    - it reads ``aws-s3`` schemes only: a repository on another S3 endpoint (moto here; MinIO) is ``custom-s3``,
      which it refuses;
    - it opens the repository's root group (``xr.open_zarr(session.store)``, no group), where a cube keeps no array:
      arrays are groups below the root, one per grid and level.

    Described as on AWS (the endpoint then comes from the environment, as AWS's SDK reads it), xpystac reaches the
    repository at the asset's version, and the same asset opened with the stackcube engine gives the cube's values.
    """
    import xpystac.core

    from tests.twins import series, upload_dir

    items = series(tmp_path / "cogs", f"s3://{s3.sources_bucket}/stac-series", 2)
    upload_dir(s3.client(), tmp_path / "cogs", s3.sources_bucket, "stac-series")
    repo = f"s3://{s3.repos_bucket}/cubes/stac"
    cube = stackcube.build_cube(items, repo=repo, progress=False)

    collection = to_stac(repo)
    _valid(collection, validator)
    schemes = collection.extra_fields["storage:schemes"]
    asset = collection.assets[CUBE_ASSET]
    (ref,) = asset.extra_fields["storage:refs"]
    assert STORAGE in collection.stac_extensions
    assert schemes[ref] == {
        "type": "custom-s3",
        "platform": s3.endpoint.rstrip("/"),
        "bucket": s3.repos_bucket,
        "region": s3.region,
    }
    (container,) = asset.extra_fields["vrt:hrefs"]
    sources = collection.assets[container["key"]]
    assert sources.href == f"s3://{s3.sources_bucket}/stac-series/"
    assert schemes[sources.extra_fields["storage:refs"][0]]["bucket"] == s3.sources_bucket
    with pytest.raises(ValueError, match="Only S3 buckets are currently supported"):
        xpystac.core.to_xarray(asset)

    settings = stackcube.settings.current()
    on_aws = to_stac(repo, settings=dataclasses.replace(settings, s3=dataclasses.replace(settings.s3, endpoint=None)))
    _valid(on_aws, validator)
    asset = on_aws.assets[CUBE_ASSET]
    assert on_aws.extra_fields["storage:schemes"][asset.extra_fields["storage:refs"][0]]["type"] == "aws-s3"
    root = xpystac.core.to_xarray(asset)
    assert not root.data_vars  # the root group: no array there
    assert root.attrs["stackcube"]["arrays"] == list(read_metadata(repo).arrays)

    opened = xr.open_dataset(asset.href, engine="stackcube", snapshot=asset.extra_fields["version"])["data"]
    expected = stackcube.open_dataarray(repo, snapshot=cube.snapshot_id, chunks=False)
    np.testing.assert_array_equal(opened.to_numpy(), expected.to_numpy())


def test_the_stac_command_prints_or_writes_it_and_a_refresh_rewrites_it(demo_cube, tmp_path, capsys, validator):
    from stackcube.demo import write_demo_catalog

    catalog, repo, cube = demo_cube
    assert main(["stac", str(repo)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["assets"][CUBE_ASSET]["version"] == cube.snapshot_id
    out = tmp_path / "stac" / "collection.json"
    published = "s3://public-cubes/demo.icechunk"
    named = ["--id", "demo-cube", "--title", "Demo", "--license", "CC-BY-4.0", "--href", published]
    assert main(["stac", str(repo), "--out", str(out), *named]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    written = pystac.Collection.from_file(str(out))
    _valid(written, validator)
    assert (written.id, written.title, written.license) == ("demo-cube", "Demo", "CC-BY-4.0")
    assert written.assets[CUBE_ASSET].href == published
    assert json.loads(out.read_text())["links"] == []  # it stands alone: no self or root link to a catalog

    assert main(["refresh", str(repo), "--quiet", "--dry-run", "--stac", str(out)]) == 3
    assert f"STAC Collection {out} not written (--dry-run)" in capsys.readouterr().out
    assert write_demo_catalog(Path(catalog).parents[1], dates=5) == catalog  # a fifth date published
    assert main(["refresh", str(repo), "--quiet", "--stac", str(out)]) == 0
    capsys.readouterr()
    rewritten = json.loads(out.read_text())
    head = icechunk.Repository.open(icechunk.local_filesystem_storage(str(repo))).lookup_branch("main")
    assert head != cube.snapshot_id
    assert rewritten["assets"][CUBE_ASSET]["version"] == head
    assert len(rewritten["cube:dimensions"]["EPSG32735_10m/time"]["values"]) == 5
    kept = ("id", "title", "license")
    assert tuple(rewritten[k] for k in kept) == ("demo-cube", "Demo", "CC-BY-4.0")
    assert rewritten["assets"][CUBE_ASSET]["href"] == published  # where users open it, kept

    for odd in ("[]", '{"assets": []}', '{"assets": {"cube": "x"}}', "not json"):  # written anew, after the refresh
        out.write_text(odd)
        assert main(["refresh", str(repo), "--quiet", "--stac", str(out)]) == 3  # nothing new to commit
        assert json.loads(out.read_text())["id"] == "cube"
    assert main(["stac", str(repo), "--out", str(out), *named]) == 0
    assert main(["stac", str(repo), "--out", str(out)]) == 0  # the command itself keeps nothing of the file
    assert json.loads(out.read_text())["id"] == "cube"
    capsys.readouterr()

    assert main(["stac", str(repo), "--tag", "nope"]) == 2
    assert "has no tag 'nope'" in capsys.readouterr().err
    assert main(["stac", str(repo), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{tmp_path} is a folder" in err
    assert write_demo_catalog(Path(catalog).parents[1], dates=6) == catalog  # a sixth date: a refresh would commit
    tip = icechunk.Repository.open(icechunk.local_filesystem_storage(str(repo))).lookup_branch("main")
    assert main(["refresh", str(repo), "--quiet", "--stac", str(tmp_path)]) == 2  # said before refreshing
    assert "is a folder" in capsys.readouterr().err
    assert icechunk.Repository.open(icechunk.local_filesystem_storage(str(repo))).lookup_branch("main") == tip
    assert main(["stac", str(repo), "--href", "https://h.example/c.icechunk?sig=s3cr3t"]) == 2
    err = capsys.readouterr().err
    assert "give --href the URL without it" in err
    assert "s3cr3t" not in err
