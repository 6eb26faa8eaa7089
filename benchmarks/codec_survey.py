"""Which corpus TIFFs could be read with Zarr v3's own codecs instead of ``stackcube.tiff``?

For IFD 0 of every TIFF under the corpus, print compression, predictor, byte order, sample format, bits per
sample, samples per pixel, planar configuration, tiles or strips, and a verdict:

- ``bytes``           uncompressed, no TIFF-specific step: the stored segment is the chunk's bytes
- ``bytes+zstd``      Compression=50000 (ZSTD) and nothing else TIFF-specific
- ``bytes+zlib``      Compression=8/32946 (Deflate, a zlib stream) and nothing else TIFF-specific
- ``tiff-only (...)`` some step only ``stackcube.tiff`` does, and why

A chunky (PlanarConfiguration=1) image with several samples stores (y, x, sample) per segment while the array's
chunk is (band, y, x): those verdicts get ``transpose+`` in front (Zarr's ``transpose`` codec, order [1, 2, 0]
for a (band, y, x) array, [0, 2, 3, 1] for (time, band, y, x)).

Every non-tiff-only verdict is checked: IFD 0's segments are put into an in-memory Zarr store as chunks of an
array whose codecs are the proposed standard ones, read back with zarr-python, and compared bit for bit with
tifffile's decode ("checked ok", or what failed). Other IFDs (overviews, masks) are summarised in a last column
when their verdict differs from IFD 0's.

Run:  python -m benchmarks.codec_survey [CORPUS_DIR]   (default: ../shared/corpus/tiff)
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import tifffile
import zarr
from zarr.storage import MemoryStore

CORPUS = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "corpus" / "tiff"
DEFLATE = {8, 32946}
ZSTD = 50000


def verdict(page: tifffile.TiffPage) -> tuple[str, str]:
    """(verdict, why) for one page; why is empty unless tiff-only."""
    comp, pred = int(page.compression), int(page.predictor)
    bps = page.bitspersample
    fmt = int(page.sampleformat)
    why = []
    if comp not in {1, ZSTD, *DEFLATE}:
        why.append(f"compression {page.compression.name}")
    if pred != 1 and comp != 1:  # tifffile (and libtiff) ignore a predictor on uncompressed data
        why.append(f"predictor {pred}")
    if isinstance(bps, tuple) or bps not in {8, 16, 32, 64, 128}:
        why.append(f"{bps}-bit samples")
    if fmt == 5:
        why.append("complex integers")
    if page.fillorder != 1:
        why.append("FillOrder=2")
    if page.is_subsampled and comp not in {6, 7}:
        why.append("YCbCr subsampling")
    if page.imagedepth != 1:
        why.append("volumetric")
    if not page.is_tiled:
        rows = min(int(page.rowsperstrip) or page.imagelength, page.imagelength)
        if page.imagelength % rows:
            why.append(f"short last strip ({page.imagelength} rows in strips of {rows})")
    if why:
        return "tiff-only", ", ".join(why)
    base = {1: "bytes", ZSTD: "bytes+zstd"}.get(comp, "bytes+zlib")
    if page.planarconfig == 1 and page.samplesperpixel > 1:
        base = "transpose+" + base
    return base, ""


def codecs_for(page: tifffile.TiffPage, kind: str) -> list[dict]:
    endian = "little" if page.parent.byteorder == "<" else "big"
    out: list[dict] = []
    if kind.startswith("transpose+"):
        out.append({"name": "transpose", "configuration": {"order": [1, 2, 0]}})
    out.append({"name": "bytes", "configuration": {"endian": endian}})
    if kind.endswith("zstd"):
        out.append({"name": "zstd", "configuration": {"level": 0, "checksum": False}})
    elif kind.endswith("zlib"):
        out.append({"name": "numcodecs.zlib", "configuration": {"level": 1}})
    return out


def check(page: tifffile.TiffPage, kind: str) -> str:
    """Read IFD 0 through zarr-python with the standard codecs; compare with tifffile bit for bit."""
    samples = int(page.samplesperpixel)
    separate = page.planarconfig == 2 and samples > 1
    if page.is_tiled:
        rows, cols = int(page.tilelength), int(page.tilewidth)
    else:
        rows, cols = min(int(page.rowsperstrip) or page.imagelength, page.imagelength), int(page.imagewidth)
    shape = (samples, int(page.imagelength), int(page.imagewidth))
    chunk = (1 if separate else samples, rows, cols)
    grid = (samples if separate else 1, -(-shape[1] // rows), -(-shape[2] // cols))
    dtype = np.dtype(np.dtype(page.dtype).newbyteorder("=").str)  # 'L' -> 'Q': the spelling zarr knows
    codecs = codecs_for(page, kind)
    at = next(i for i, c in enumerate(codecs) if c["name"] == "bytes")
    store = MemoryStore()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(
            store,
            shape=shape,
            chunks=chunk,
            dtype=dtype,
            fill_value=0,
            filters=codecs[:at] or None,
            serializer=codecs[at],
            compressors=codecs[at + 1 :] or None,
            zarr_format=3,
        )
    fh = page.parent.filehandle
    raw = {}
    for i, (off, n) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
        if off == 0 or n == 0:
            continue
        fh.seek(off)
        b, rest = divmod(i, grid[1] * grid[2])
        r, c = divmod(rest, grid[2])
        raw[f"c/{b}/{r}/{c}"] = fh.read(n)
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()
    for key, data in raw.items():
        zarr.core.sync.sync(store.set(key, proto.buffer.from_bytes(data)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            actual = arr[...]
    except Exception as exc:  # what a standard pipeline cannot read is the finding
        return f"FAILED: {type(exc).__name__}: {str(exc)[:80]}"
    expected = page.asarray().reshape(page.shaped)
    expected = expected[:, 0, :, :, 0] if expected.shape[0] > 1 else expected[0, 0].transpose(2, 0, 1)
    same = np.ascontiguousarray(actual).view(np.uint8) == np.ascontiguousarray(expected).view(np.uint8)
    return "checked ok" if same.all() else f"FAILED: {int((~same).sum())} bytes differ"


def pages(tif: tifffile.TiffFile):
    def walk(seq):
        for i in range(len(seq)):
            page = seq[i]
            yield page
            if page.pages is not None:
                yield from walk(page.pages)

    yield from walk(tif.pages)


def main() -> None:
    files = sorted(
        p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() in {".tif", ".tiff", ".ovr", ".msk"}
    )
    header = (
        "| file | compression | pred | order | format | bits | spp | planar | layout | verdict | why / check "
        "| other IFDs |"
    )
    print(header)
    print("|---" * 12 + "|")
    totals: Counter[str] = Counter()
    for path in files:
        name = str(path.relative_to(CORPUS))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tif = tifffile.TiffFile(path)
                page = tif.pages[0]
                _ = page.compression, page.dtype
            except Exception as exc:
                print(f"| {name} | unreadable by tifffile ({type(exc).__name__}) | | | | | | | | error | | |")
                totals["error"] += 1
                continue
            with tif:
                kind, why = verdict(page)
                try:
                    note = why if kind == "tiff-only" else check(page, kind)
                except Exception as exc:  # a survey reports, it does not stop
                    note = f"FAILED: {type(exc).__name__}: {str(exc)[:80]}"
                others = Counter()
                for other in list(pages(tif))[1:]:
                    try:
                        k, _ = verdict(other)
                    except Exception:
                        k = "error"
                    if k != kind:
                        others[k] += 1
                other_text = ", ".join(f"{n}x {k}" for k, n in sorted(others.items()))
                layout = (
                    f"tiles {page.tilelength}x{page.tilewidth}" if page.is_tiled else f"strips of {page.rowsperstrip}"
                )
                comp = page.compression.name if hasattr(page.compression, "name") else str(page.compression)
                fmt = page.sampleformat.name if hasattr(page.sampleformat, "name") else str(page.sampleformat)
                planar = "separate" if page.planarconfig == 2 else "chunky"
                print(
                    f"| {name} | {comp} ({int(page.compression)}) | {int(page.predictor)} | {tif.byteorder} | {fmt} | "
                    f"{page.bitspersample} | {page.samplesperpixel} | {planar} | {layout} | {kind} | {note} "
                    f"| {other_text} |"
                )
                totals[kind] += 1
    print()
    print("Totals (IFD 0 of each file): " + ", ".join(f"{k}: {n}" for k, n in sorted(totals.items())))


if __name__ == "__main__":
    main()
