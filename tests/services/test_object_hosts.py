"""nginx and the S3 endpoint answer ranged GETs with the right bytes and an ETag."""

from __future__ import annotations

import os
import urllib.request

import pytest

pytestmark = pytest.mark.network


def test_nginx_ranged_get_returns_the_bytes_and_an_etag(nginx) -> None:
    payload = os.urandom(100_000)
    (nginx.root / "blob.bin").write_bytes(payload)
    req = urllib.request.Request(f"{nginx.url}/blob.bin", headers={"Range": "bytes=1000-1999"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 206
        assert r.read() == payload[1000:2000]
        etag = r.headers["ETag"]
    assert etag
    req = urllib.request.Request(f"{nginx.url}/blob.bin", headers={"Range": "bytes=0-9", "If-Match": '"other"'})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    assert info.value.code == 412
    info.value.close()


def test_s3_ranged_get_returns_the_bytes_and_an_etag(s3) -> None:
    payload = os.urandom(100_000)
    client = s3.client()
    client.put_object(Bucket=s3.sources_bucket, Key="blob.bin", Body=payload)
    got = client.get_object(Bucket=s3.sources_bucket, Key="blob.bin", Range="bytes=1000-1999")
    assert got["Body"].read() == payload[1000:2000]
    assert got["ETag"].strip('"')
    assert got["ContentRange"] == "bytes 1000-1999/100000"
