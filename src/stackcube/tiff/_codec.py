"""The Zarr v3 codec ``stackcube.tiff``: one stored TIFF segment (tile or strip) -> one (band, y, x) chunk.

Registered through the ``zarr.codecs`` entry point, so any process with stackcube installed reads cubes and
virtual stores that use it. Its configuration is the :class:`~stackcube.tiff.Recipe`, which is all it needs: a
chunk is decoded from its own bytes, whatever file they came from.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from stackcube.errors import CorruptTiffError, StackcubeError
from stackcube.tiff._decode import decode_segment
from stackcube.tiff._model import Recipe

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

__all__ = ["CODEC_NAME", "TiffSegmentCodec"]

CODEC_NAME = "stackcube.tiff"


@dataclass(frozen=True)
class TiffSegmentCodec(ArrayBytesCodec):
    """Decode the bytes of one TIFF tile or strip with the recipe in the configuration. Read-only."""

    is_fixed_size = False

    recipe: Recipe

    def __init__(self, *, recipe: Recipe | dict[str, Any]) -> None:
        object.__setattr__(self, "recipe", recipe if isinstance(recipe, Recipe) else Recipe.from_config(recipe))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        _, configuration = parse_named_configuration(data, CODEC_NAME)
        return cls(recipe=Recipe.from_config(configuration or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": CODEC_NAME, "configuration": self.recipe.to_config()}

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        data = chunk_bytes.as_numpy_array().view(np.uint8)
        fill = chunk_spec.fill_value
        try:
            block = decode_segment(memoryview(data), self.recipe, fill.item() if hasattr(fill, "item") else fill)
        except StackcubeError:
            raise
        except (ValueError, RuntimeError) as exc:  # imagecodecs' errors derive from these
            msg = (
                f"a {len(data)}-byte tile could not be decoded as {self.recipe.compression} ({exc}): its file is not "
                "what it was when the cube was built (replaced on a host whose changes cannot be detected on read), "
                "or damaged; stackcube.verify_cube(repo) (on the command line: stackcube verify REPO) names the "
                "sources that changed"
            )
            raise CorruptTiffError(msg) from exc
        dtype = chunk_spec.dtype.to_native_dtype()
        if block.dtype != dtype:
            block = block.astype(dtype)
        if block.shape != chunk_spec.shape:
            # a cube's chunks carry leading unit axes, e.g. (1 time, bands, y, x)
            block = block.reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(np.ascontiguousarray(block))

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        msg = "stackcube.tiff is a read-only codec: chunks are references into TIFF files, never written"
        raise NotImplementedError(msg)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return self._encode_sync(chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError
