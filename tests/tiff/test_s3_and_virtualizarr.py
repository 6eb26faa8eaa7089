"""s3:// hrefs against a real S3 endpoint, and stackcube as a VirtualiZarr parser."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import virtualizarr
import xarray as xr
from obspec_utils.registry import ObjectStoreRegistry
from obstore.store import LocalStore

from stackcube.demo import write_demo_tiff
from stackcube.errors import SourceNotFoundError
from stackcube.tiff import TiffParser, open_tiff, read_tiff
from tests.conftest import CORPUS


@pytest.mark.network
def test_s3_href_reads_header_and_values(s3, tmp_path) -> None:
    path, expected = write_demo_tiff(tmp_path / "demo.tif", size=512, tile=128)
    client = s3.client()
    client.create_bucket(Bucket="cogs")
    client.upload_file(str(path), "cogs", "scenes/demo.tif")
    etag = client.head_object(Bucket="cogs", Key="scenes/demo.tif")["ETag"]
    manifest = read_tiff("s3://cogs/scenes/demo.tif")
    assert manifest.etag == etag
    assert manifest.href == "s3://cogs/scenes/demo.tif"
    np.testing.assert_array_equal(open_tiff("s3://cogs/scenes/demo.tif").values, expected)
    with pytest.raises(SourceNotFoundError, match=r"s3://cogs/scenes/missing\.tif"):
        read_tiff("s3://cogs/scenes/missing.tif")


@pytest.mark.corpus
def test_virtualizarr_open_virtual_dataset_uses_the_parser(corpus) -> None:
    path = CORPUS / "tiff" / "rio-tiler" / "cog.tif"
    registry = ObjectStoreRegistry({"file:///": LocalStore()})
    vds = virtualizarr.open_virtual_dataset(
        path.as_uri(), registry=registry, parser=TiffParser(ifd=1), loadable_variables=[]
    )
    assert vds["data"].dims == ("band", "y", "x")
    assert vds["data"].shape == (1, 1334, 1329)
    # the same references, opened as a Zarr store, give tifffile's values
    store = TiffParser(ifd=1)(path.as_uri(), registry)
    values = xr.open_zarr(store, consolidated=False, zarr_format=3, mask_and_scale=False)["data"].values
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(values[0], tif.pages[1].asarray())


@pytest.mark.corpus
def test_virtualizarr_datatree_has_every_ifd(corpus) -> None:
    path = CORPUS / "tiff" / "image-tiff" / "subsubifds.tif"
    registry = ObjectStoreRegistry({"file:///": LocalStore()})
    store = TiffParser(ifd=None)(path.as_uri(), registry)
    tree = xr.open_datatree(store, engine="zarr", consolidated=False, zarr_format=3, mask_and_scale=False)
    names = sorted(tree.children)
    manifest = read_tiff(path)
    assert names == sorted("ifd" + ".".join(map(str, e.path)) for e in manifest.ifds)
    with tifffile.TiffFile(path) as tif:
        sub = tif.pages[1].pages[2]
        np.testing.assert_array_equal(tree["ifd1.2"]["data"].values, sub.asarray().transpose(2, 0, 1))
