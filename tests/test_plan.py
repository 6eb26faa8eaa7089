"""Planner invariants over random grids and tilings (Hypothesis): every stored source chunk lands exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stackcube.grid import group_by_grid
from stackcube.options import CubeOptions
from stackcube.plan import build_array, clip_to_bbox
from stackcube.sources import Source
from stackcube.tiff import Geo, IfdManifest, Recipe, TiffManifest

T0 = datetime(2020, 6, 1, tzinfo=UTC)


def make_source(
    i: int,
    *,
    tile: int,
    res: float,
    x0: float,
    y0: float,
    row: int,
    col: int,
    ny: int,
    nx: int,
    day: int,
    missing: np.ndarray,
    cloud: float,
) -> Source:
    height, width = ny * tile - (tile // 3 if ny > 1 else 0), nx * tile
    recipe = Recipe(
        compression=8,
        predictor=2,
        byteorder="<",
        dtype="uint16",
        bitspersample=16,
        samples=1,
        segment_length=tile,
        segment_width=tile,
        image_length=height,
        image_width=width,
        tiled=True,
        photometric=1,
    )
    offsets = (np.arange(ny * nx, dtype=np.uint64) + np.uint64(i * 1_000_000 + 1)).reshape(1, ny, nx)
    lengths = np.where(missing.reshape(1, ny, nx), 0, 100).astype(np.uint64)
    offsets = np.where(lengths > 0, offsets, 0).astype(np.uint64)
    transform = (res, 0.0, x0 + col * tile * res, 0.0, -res, y0 - row * tile * res)
    ifd = IfdManifest(
        path=(0,),
        role="image",
        level=0,
        shape=(1, height, width),
        dtype=np.dtype("uint16"),
        chunk_shape=(1, tile, tile),
        offsets=offsets,
        lengths=lengths,
        recipe=recipe,
        fill_value=0,
        geo=Geo(crs="EPSG:32635", transform=transform),
    )
    manifest = TiffManifest(
        href=f"file:///s{i}.tif",
        etag=f'"{i}"',
        last_modified=None,
        size=10**9,
        byteorder="<",
        bigtiff=False,
        ifds=(ifd,),
    )
    return Source(
        item_id=f"item{i}",
        asset="B04",
        band="B04",
        datetime=T0 + timedelta(days=day),
        properties={"eo:cloud_cover": cloud},
        manifest=manifest,
    )


@st.composite
def scenes(draw):
    tile = draw(st.sampled_from([16, 32, 64]))
    res = draw(st.sampled_from([10.0, 20.0, 30.0]))
    x0 = draw(st.integers(-1000, 1000)) * res * tile + draw(st.sampled_from([0.0, res / 2]))
    y0 = draw(st.integers(-1000, 1000)) * res * tile
    n = draw(st.integers(1, 8))
    sources = []
    for i in range(n):
        ny, nx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        missing = np.array(draw(st.lists(st.booleans(), min_size=ny * nx, max_size=ny * nx)))
        missing &= np.arange(ny * nx) != 0  # at least one stored tile per source
        sources.append(
            make_source(
                i,
                tile=tile,
                res=res,
                x0=x0,
                y0=y0,
                row=draw(st.integers(0, 5)),
                col=draw(st.integers(0, 5)),
                ny=ny,
                nx=nx,
                day=draw(st.integers(0, 2)),
                missing=missing,
                cloud=draw(st.floats(0, 100)),
            )
        )
    return sources


def stored_positions(plan, sources):
    """(time, tile row, tile col) -> source indices that store a tile there."""
    a, _, x0, _, e, y0 = plan.transform[:6]
    times = {t: i for i, t in enumerate(plan.time)}
    where: dict[tuple[int, int, int], list[int]] = {}
    for i, s in enumerate(sources):
        _, _, c, _, _, f = s.image.geo.transform
        row0 = round((f - y0) / (e * plan.chunks[2]))
        col0 = round((c - x0) / (a * plan.chunks[3]))
        t = times[np.datetime64(s.datetime.replace(tzinfo=None), "ns")]
        for r, cc in np.argwhere(s.image.lengths[0] > 0):
            where.setdefault((t, row0 + r, col0 + cc), []).append(i)
    return where


@settings(max_examples=200, deadline=None)
@given(sources=scenes(), overlap=st.sampled_from(["first", "last"]), by_cloud=st.booleans())
def test_every_stored_chunk_lands_once_and_overlaps_follow_the_rule(sources, overlap, by_cloud) -> None:
    by_grid, rejected = group_by_grid(sources)
    assert not rejected
    assert len(by_grid) == 1  # same CRS, resolution and phase: one grid whatever the offsets
    ((key, members),) = by_grid.items()
    options = CubeOptions(overlap=overlap, sort_by="eo:cloud_cover" if by_cloud else None)
    plan = build_array("g", key, members, options)
    assert plan is not None
    where = stored_positions(plan, members)
    placed = {(t, r, c): int(plan.source_index[t, 0, r, c]) for t, _, r, c in np.argwhere(plan.source_index >= 0)}
    assert set(placed) == set(where)  # every stored position is filled, nothing else is
    order = (
        sorted(range(len(members)), key=lambda i: (members[i].properties["eo:cloud_cover"],))
        if by_cloud
        else list(range(len(members)))
    )
    for pos, claimants in where.items():
        ranked = sorted(claimants, key=order.index)
        expected = ranked[0] if overlap == "first" else ranked[-1]
        assert placed[pos] == expected
        tile_offset = plan.offsets[pos[0], 0, pos[1], pos[2]]
        i = expected
        assert i * 1_000_000 < int(tile_offset) < (i + 1) * 1_000_000  # the chunk's bytes come from that source
    if all(len(c) == 1 for c in where.values()):
        total = sum(int((s.image.lengths > 0).sum()) for s in members)
        assert plan.n_chunks == total
    assert np.all(np.diff(plan.x) > 0)
    assert np.all(np.diff(plan.y) < 0)
    assert np.all(np.diff(plan.time.astype("int64")) > 0)
    assert plan.shape[2] == plan.y.size
    assert plan.shape[3] == plan.x.size


@settings(max_examples=100, deadline=None)
@given(sources=scenes(), frac=st.tuples(*[st.floats(0, 1)] * 4))
def test_bbox_clip_keeps_a_chunk_aligned_window(sources, frac) -> None:
    import pyproj

    ((key, members),) = group_by_grid(sources)[0].items()
    plan = build_array("g", key, members)
    a, _, x0, _, e, y0 = plan.transform[:6]
    xs = sorted(x0 + a * plan.shape[3] * f for f in frac[:2])
    ys = sorted(y0 + e * plan.shape[2] * f for f in frac[2:])
    to_lonlat = pyproj.Transformer.from_crs(plan.crs, "EPSG:4326", always_xy=True)
    bbox = to_lonlat.transform_bounds(xs[0], ys[0], xs[1], ys[1])
    clipped = clip_to_bbox(plan, bbox)
    if clipped is None:
        return
    _, _, rows, cols = plan.chunks
    dx = round((clipped.transform[2] - x0) / a)
    dy = round((clipped.transform[5] - y0) / e)
    assert dx % cols == 0
    assert dy % rows == 0
    r0, r1, c0, c1 = clipped.window
    assert 0 <= r0 < r1 <= clipped.shape[2]
    assert 0 <= c0 < c1 <= clipped.shape[3]
    ty, tx = dy // rows, dx // cols
    ny, nx = clipped.source_index.shape[2:]
    assert np.array_equal(clipped.source_index, plan.source_index[:, :, ty : ty + ny, tx : tx + nx])
    np.testing.assert_array_equal(clipped.x, plan.x[dx : dx + clipped.shape[3]])


def write_with_overviews(path, *, x0: float, levels: list[int], tile: int = 64, size: int = 256) -> Source:
    """A real tiled GeoTIFF (rasterio) with internal overviews at ``levels``, read back as a source."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import Affine

    from stackcube.tiff import read_tiff

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32635",
        "transform": Affine(10.0, 0.0, x0, 0.0, -10.0, 9_000_000.0),
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "compress": "deflate",
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.arange(size * size, dtype=np.uint16).reshape(1, size, size) % 5000 + 1)
        ds.build_overviews(levels, Resampling.nearest)
    return Source(
        item_id=path.stem,
        asset="B04",
        band="B04",
        datetime=T0,
        properties={},
        manifest=read_tiff(path.as_uri()),
    )


def test_overviews_are_planned_while_every_source_has_them_on_one_tile_grid(tmp_path) -> None:
    # side by side, two tiles apart: level 1 (one tile apart) still lines up; level 2 would be half a tile apart
    a = write_with_overviews(tmp_path / "a.tif", x0=500_000.0, levels=[2, 4, 8])
    b = write_with_overviews(tmp_path / "b.tif", x0=500_000.0 + 2 * 64 * 10.0, levels=[2, 4, 8])
    (key, members), *_ = group_by_grid([a, b])[0].items()
    plan = build_array("g", key, members)
    assert plan is not None
    assert plan.mosaic
    assert len(plan.overviews) == 1
    level = plan.overviews[0]
    assert level.transform[:6] == (20.0, 0.0, 500_000.0, 0.0, -20.0, 9_000_000.0)
    assert level.shape == (1, 1, 128, 192)
    assert level.fill_value == plan.fill_value == 0
    # each source has 2 x 2 tiles at level 1, overlapping in one column: the first source keeps it
    np.testing.assert_array_equal(level.source_index[0, 0], [[0, 0, 1], [0, 0, 1]])

    # one source lacks level 2: only level 1 is planned, even on one footprint
    c = write_with_overviews(tmp_path / "c.tif", x0=500_000.0, levels=[2])
    d = write_with_overviews(tmp_path / "d.tif", x0=500_000.0, levels=[2, 4])
    (key, members), *_ = group_by_grid([c, d])[0].items()
    plan = build_array("g", key, members)
    assert plan is not None
    assert [o.shape[2:] for o in plan.overviews] == [(128, 128)]

    # no overviews at all
    e = write_with_overviews(tmp_path / "e.tif", x0=500_000.0, levels=[])
    (key, members), *_ = group_by_grid([e])[0].items()
    plan = build_array("g", key, members)
    assert plan is not None
    assert plan.overviews == ()
