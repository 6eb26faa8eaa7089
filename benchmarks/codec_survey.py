"""Which corpus TIFFs could be read with Zarr v3's own codecs instead of ``stackcube.tiff``?

For IFD 0 of every TIFF under the corpus, print compression, predictor, byte order, sample format, bits per
sample, samples per pixel, planar configuration, tiles or strips, and a verdict, which is the rule stackcube writes
arrays by (:func:`stackcube.tiff.standard_codecs` on the IFD's recipe, :func:`stackcube.tiff.tiff_only_reason`
for why not):

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
when their verdict differs from IFD 0's. A file stackcube refuses is ``tiff-only`` with stackcube's reason.

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
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import MemoryStore

from stackcube.errors import TiffError
from stackcube.tiff import IfdManifest, StandardCodecs, read_tiff, standard_codecs, tiff_only_reason

CORPUS = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "corpus" / "tiff"


def verdict(ifd: IfdManifest | None, refused: str = "") -> tuple[str, str, StandardCodecs | None]:
    """(verdict, why, codecs) for one IFD (None: stackcube refuses the file, for the reason ``refused``)."""
    if ifd is None:
        return "tiff-only", f"refused: {refused}", None
    if ifd.damage is not None:
        return "error", ifd.damage, None
    codecs = standard_codecs(ifd.recipe, ndim=3, lengths=ifd.lengths)
    if codecs is None:
        return "tiff-only", tiff_only_reason(ifd.recipe, ifd.lengths) or "", None
    return codecs.name, "", codecs


def check(page: tifffile.TiffPage, ifd: IfdManifest, codecs: StandardCodecs) -> str:
    """Read the IFD through zarr-python with the standard codecs; compare with tifffile bit for bit."""
    store = MemoryStore()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(
            store,
            shape=ifd.shape,
            chunks=ifd.chunk_shape,
            dtype=ifd.dtype,
            fill_value=0,
            zarr_format=3,
            **codecs.create_keywords(),
        )
    fh = page.parent.filehandle
    proto = default_buffer_prototype()
    for (b, r, c), off in np.ndenumerate(ifd.offsets):
        n = int(ifd.lengths[b, r, c])
        if n == 0:
            continue
        fh.seek(int(off))
        zarr.core.sync.sync(store.set(f"c/{b}/{r}/{c}", proto.buffer.from_bytes(fh.read(n))))
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
                try:
                    ifds: list[IfdManifest | None] = list(read_tiff(path).ifds)
                    refused = ""
                except TiffError as exc:
                    ifds, refused = [None] * len(list(pages(tif))), str(exc).rsplit(": ", 1)[-1][:80]
                kind, why, codecs = verdict(ifds[0], refused)
                try:
                    note = why if codecs is None or ifds[0] is None else check(page, ifds[0], codecs)
                except Exception as exc:  # a survey reports, it does not stop
                    note = f"FAILED: {type(exc).__name__}: {str(exc)[:80]}"
                others = Counter()
                for other in ifds[1:]:
                    k, _, _ = verdict(other, refused)
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
