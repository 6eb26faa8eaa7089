"""The cube stage: arrays named after their grid, the report, and the deprecated names."""

from __future__ import annotations

import dataclasses

import pytest

import stackcube
from stackcube.cube import plan_sources
from stackcube.errors import NothingFoundError
from stackcube.search import Query


def test_arrays_are_named_after_crs_and_pixel_size(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog

    plan = stackcube.plan_cube(write_demo_catalog(tmp_path / "demo", dates=2, size=256), progress=False)
    assert [a.name for a in plan.arrays] == ["EPSG32735_10m", "EPSG32735_20m"]
    assert plan.array_names == ["EPSG32735_10m", "EPSG32735_20m"]
    assert plan.standalone == plan.arrays
    report = plan.report()
    assert report.startswith("2 arrays: EPSG:32735 10 m x 2 dates x 4 bands")
    assert "  EPSG32735_20m: EPSG:32735 20 m x 2 dates x 2 bands" in report
    with pytest.warns(DeprecationWarning, match="use CubePlan.arrays"):
        assert plan.groups == plan.arrays
    with pytest.warns(DeprecationWarning, match="use stackcube.ArrayPlan"):
        assert stackcube.GroupPlan is stackcube.ArrayPlan


def test_a_bbox_that_misses_every_grid_is_explained(tmp_path) -> None:
    from benchmarks.cube_bench import synthetic_sources

    sources = synthetic_sources(2, 1, 2)
    plan = plan_sources(Query(catalog=None), sources)
    assert plan.arrays[0].name == "EPSG32735_10m"
    with pytest.raises(NothingFoundError, match="no source grid overlaps the bbox"):
        plan_sources(Query(catalog=None, bbox=(0.0, 0.0, 1.0, 1.0)), sources)


def test_sources_that_cannot_be_gridded_are_not_blamed_on_a_bbox() -> None:
    from benchmarks.cube_bench import synthetic_sources

    def rotated(source):
        ifd = source.manifest.ifds[0]
        geo = dataclasses.replace(ifd.geo, transform=(10.0, 1.0, 499980.0, 1.0, -10.0, 9200020.0))
        ifds = (dataclasses.replace(ifd, geo=geo), *source.manifest.ifds[1:])
        return dataclasses.replace(source, manifest=dataclasses.replace(source.manifest, ifds=ifds))

    sources = [rotated(s) for s in synthetic_sources(2, 1, 1)]
    with pytest.raises(NothingFoundError, match=r"^none of the 2 sources can be placed on a grid: .*rotat"):
        plan_sources(Query(catalog=None), sources)


def test_a_plan_and_its_parts_summarise_themselves_at_the_prompt(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog

    plan = stackcube.plan_cube(write_demo_catalog(tmp_path / "demo", dates=2, size=256), progress=False)
    shown = repr(plan)
    assert shown.startswith("<CubePlan of ")
    assert "EPSG32735_10m: EPSG:32735 10 m x 2 dates x 4 bands (256 x 256 px" in shown
    assert "; 12 sources;" in shown
    array = plan.arrays[0]
    parts = [plan, array, array.sources, plan.sources[0], plan.sources[0].manifest, plan.sources[0].manifest.ifds[0]]
    for part in parts:  # none prints its coordinate or offset arrays
        assert len(repr(part)) < 400, type(part).__name__
        assert "array(" not in repr(part)
    assert repr(array) == f"<ArrayPlan EPSG32735_10m: {array.describe()}, {array.n_chunks} chunks from 8 sources>"
