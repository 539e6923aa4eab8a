"""Weight files checked against their own headers before any library reads them.

A safetensors or GGUF file whose header lies (offsets past the end, counts no file could hold,
a header larger than the file) made the loaders fail deep inside a library, or allocate what the
header claimed, and the error looked transient, so the shard was retried. Every structure is
checked here against the file's real size, and a bad file is a ModelError that names it: the
audit fails once. Reads are `pread`s through a small window (never a memory map: a file cut
short under a map kills the process with SIGBUS), and headers are capped far above any real
checkpoint's, so a check costs bounded time and memory in the API too.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable
from typing import Any

from core.confinement import PathRefused, Pinned
from core.inspection.errors import ModelError
from core.json_input import JsonRefused, loads

# A real header is kilobytes (a few MB for a many-expert model in one file); the library's own
# limit is 100 MB, which costs seconds and a gigabyte to parse.
SAFETENSORS_MAX_HEADER = 8 * 1024**2
LOADED_BYTES_PER_PARAMETER = 2  # bf16 on a GPU (worker.loaders.models.pick_device)
GGUF_DEQUANTIZED_FACTOR = 4  # ~4 bits a weight on disk, 16 once dequantized to bf16
PICKLED_SUFFIXES = (".bin", ".pt", ".pth")
# Bits per element; safetensors' dtypes, the sub-byte float formats included.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
GGUF_MAGIC = b"GGUF"
GGUF_MAX_DIMS = 4  # ggml's GGML_MAX_DIMS
GGUF_MAX_ARRAY_NESTING = 4
# Fixed sizes of GGUF scalar value types, by type id; 8 is a string, 9 an array.
GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGUF_STRING, GGUF_ARRAY, GGUF_UINT32 = 8, 9, 4
GGUF_DEFAULT_ALIGNMENT = 32
# Far above real files (a few hundred metadata keys, ~1k tensors a shard, vocabularies and
# merges of a few hundred thousand strings), far below what costs seconds to walk.
GGUF_MAX_VALUES = 65_536
GGUF_MAX_TENSORS = 200_000
GGUF_MAX_STRINGS = 2_000_000
READ_WINDOW = 1 << 20


class _Bad(Exception):
    """A fault found in a header; becomes a ModelError naming the file."""


class _Reader:
    """Bytes of a file by offset, read with pread through a window, never past its size."""

    def __init__(self, descriptor: int, size: int) -> None:
        self.descriptor, self.size = descriptor, size
        self.start, self.data = 0, b""

    def read(self, offset: int, count: int, what: str) -> bytes:
        if count < 0 or offset + count > self.size:
            raise _Bad(f"{what} runs past the end of the file (offset {offset}, {count} bytes)")
        end = self.start + len(self.data)
        if not (self.start <= offset and offset + count <= end):
            self.start = offset
            self.data = os.pread(self.descriptor, max(count, READ_WINDOW), offset)
            if len(self.data) < count:
                raise _Bad("the file was cut short while it was read")
        return self.data[offset - self.start : offset - self.start + count]


def _numel(shape: Any) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _Bad(f"shape {shape!r} is not a list of non-negative integers")
    count = 1
    for dim in shape:
        count *= dim
    return count


def check_safetensors(reader: _Reader) -> int:
    size = reader.size
    if size < 8:
        raise _Bad(f"{size} bytes: too short for a safetensors header")
    (header_len,) = struct.unpack("<Q", reader.read(0, 8, "the header length"))
    if header_len > size - 8:
        raise _Bad(f"the header claims {header_len} bytes; the file holds {size - 8} after it")
    if header_len > SAFETENSORS_MAX_HEADER:
        raise _Bad(f"the header is {header_len} bytes; at most {SAFETENSORS_MAX_HEADER} are read")
    try:
        header = loads(reader.read(8, header_len, "the header"), max_depth=4)
    except JsonRefused as exc:
        raise _Bad(f"the header is not valid JSON: {exc.reason}") from None
    if not isinstance(header, dict):
        raise _Bad("the header is not a JSON object")
    data_size = size - 8 - header_len
    spans = []
    parameters = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in SAFETENSORS_DTYPE_BITS:
            raise _Bad(f"tensor {name!r} has no known dtype")
        offsets = entry.get("data_offsets")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise _Bad(
                f"tensor {name!r} has data_offsets {offsets!r} outside the {data_size} data bytes"
            )
        numel = _numel(entry.get("shape"))
        parameters += numel
        bits = numel * SAFETENSORS_DTYPE_BITS[entry["dtype"]]
        if bits != 8 * (offsets[1] - offsets[0]):
            raise _Bad(f"tensor {name!r}: its shape and dtype need {bits // 8} bytes, not "
                       f"{offsets[1] - offsets[0]}")  # fmt: skip
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise _Bad(f"tensors {first!r} and {second!r} overlap")
    return parameters


class _Cursor:
    """Reads GGUF fields in order, never past the end of the file."""

    def __init__(self, reader: _Reader) -> None:
        self.reader, self.size, self.at, self.strings = reader, reader.size, 0, 0

    def need(self, count: int, what: str) -> None:
        if count < 0 or self.at + count > self.size:
            raise _Bad(f"{what} runs past the end of the file (offset {self.at}, {count} bytes)")

    def unpack(self, fmt: str, what: str) -> int:
        width = struct.calcsize(fmt)
        (value,) = struct.unpack(fmt, self.reader.read(self.at, width, what))
        self.at += width
        return value

    def skip(self, count: int, what: str) -> None:
        self.need(count, what)
        self.at += count

    def string(self, what: str) -> bytes:
        self.strings += 1
        if self.strings > GGUF_MAX_STRINGS:
            raise _Bad(f"more than {GGUF_MAX_STRINGS} strings in the metadata")
        length = self.unpack("<Q", what)
        self.need(length, what)
        value = self.reader.read(self.at, length, what) if length <= 256 else b""
        self.at += length
        return value

    def value(self, kind: int, what: str, nesting: int = 0) -> int | None:
        """Skip one value; an unsigned 32-bit scalar is returned (for general.alignment)."""
        if kind in GGUF_SCALAR_BYTES:
            if kind == GGUF_UINT32:
                return self.unpack("<I", what)
            self.skip(GGUF_SCALAR_BYTES[kind], what)
        elif kind == GGUF_STRING:
            self.string(what)
        elif kind == GGUF_ARRAY:
            if nesting >= GGUF_MAX_ARRAY_NESTING:
                raise _Bad(f"{what}: arrays nested deeper than {GGUF_MAX_ARRAY_NESTING}")
            element = self.unpack("<I", what)
            count = self.unpack("<Q", what)
            if element in GGUF_SCALAR_BYTES:
                self.skip(count * GGUF_SCALAR_BYTES[element], what)
            else:
                # Each element takes at least 8 bytes: a count no file could hold stops here.
                self.need(count * 8, what)
                for _ in range(count):
                    self.value(element, what, nesting + 1)
        else:
            raise _Bad(f"{what} has unknown value type {kind}")
        return None


def check_gguf(reader: _Reader) -> None:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    size = reader.size
    cursor = _Cursor(reader)
    if reader.read(0, 4, "the magic number") != GGUF_MAGIC:
        raise _Bad("not a GGUF file (no GGUF magic number)")
    cursor.at = 4
    version = cursor.unpack("<I", "the version")
    if version not in (2, 3):
        raise _Bad(f"GGUF version {version} is not supported (2 or 3)")
    n_tensors = cursor.unpack("<Q", "the tensor count")
    n_values = cursor.unpack("<Q", "the metadata count")
    if n_values > GGUF_MAX_VALUES or n_tensors > GGUF_MAX_TENSORS:
        raise _Bad(
            f"{n_values} metadata values and {n_tensors} tensors; at most {GGUF_MAX_VALUES} and "
            f"{GGUF_MAX_TENSORS} are read"
        )
    # A key-value pair takes at least 13 bytes, a tensor description 24.
    cursor.need(
        n_values * 13 + n_tensors * 24, f"{n_values} metadata values and {n_tensors} tensors"
    )
    alignment = GGUF_DEFAULT_ALIGNMENT
    for index in range(n_values):
        key = cursor.string(f"metadata key {index}")
        kind = cursor.unpack("<I", f"metadata {key!r}")
        found = cursor.value(kind, f"metadata {key.decode(errors='replace')!r}")
        if key == b"general.alignment" and found:
            alignment = found
    tensors = []
    for index in range(n_tensors):
        name = cursor.string(f"tensor {index}'s name").decode(errors="replace")
        n_dims = cursor.unpack("<I", f"tensor {name!r}")
        if n_dims > GGUF_MAX_DIMS:
            raise _Bad(f"tensor {name!r} has {n_dims} dimensions (at most {GGUF_MAX_DIMS})")
        dims = [cursor.unpack("<Q", f"tensor {name!r}") for _ in range(n_dims)]
        kind = cursor.unpack("<I", f"tensor {name!r}")
        offset = cursor.unpack("<Q", f"tensor {name!r}")
        try:
            block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):
            raise _Bad(f"tensor {name!r} has unknown type {kind}") from None
        count = _numel(dims)
        if count % block:
            raise _Bad(f"tensor {name!r}: {count} elements are not whole blocks of {block}")
        tensors.append((name, offset, count // block * block_bytes))
    data_start = -(-cursor.at // alignment) * alignment
    for name, offset, nbytes in tensors:
        if data_start + offset + nbytes > size:
            raise _Bad(f"tensor {name!r} (offset {offset}, {nbytes} bytes) runs past the end")


CHECKERS: dict[str, Callable[[_Reader], int | None]] = {
    ".safetensors": check_safetensors,
    ".gguf": check_gguf,
}


def check_weight_files(pinned: Pinned) -> int:
    """Every safetensors and GGUF file of a pinned model, checked against its header; returns
    the bytes its weights take once loaded on a GPU (`loaded_bytes`)."""
    parameters = 0
    ggufs = pickled = 0
    for name, file in sorted(pinned.files.items()):
        if name.endswith(PICKLED_SUFFIXES):
            pickled += file.size
        checker = next((c for suffix, c in CHECKERS.items() if name.endswith(suffix)), None)
        if checker is None:
            continue
        try:
            descriptor = file.reopen()
        except PathRefused as exc:
            raise ModelError(str(exc)) from None
        try:
            found = checker(_Reader(descriptor, file.size))
        except _Bad as exc:
            raise ModelError(
                f"{name} is not a valid {name.rsplit('.', 1)[1]} file: {exc}"
            ) from None
        except ImportError:
            raise ModelError(
                "GGUF models need the `gguf` extra (pip install memaudit[gguf])"
            ) from None
        if found is None:  # GGUF
            ggufs += file.size
        else:
            parameters += found
    return loaded_bytes(parameters, ggufs, pickled)


def loaded_bytes(safetensors_parameters: int, gguf_bytes: int, pickled_bytes: int) -> int:
    """What a model's weights take loaded on a GPU in bf16, from what its files say: every
    safetensors parameter at 2 bytes, whatever dtype is stored (pickled files beside them are
    not read by the loader and do not count); else a GGUF file at GGUF_DEQUANTIZED_FACTOR times
    its bytes (about 4 bits a weight dequantized to 16; an F16 file is over-counted, which errs
    towards the large-model queue); else a pickled checkpoint's bytes."""
    if safetensors_parameters:
        return LOADED_BYTES_PER_PARAMETER * safetensors_parameters
    if gguf_bytes:
        return GGUF_DEQUANTIZED_FACTOR * gguf_bytes
    return pickled_bytes


def read_json_file(pinned: Pinned, name: str, limit: int = 16 << 20) -> Any:
    """A pinned JSON file (config.json, model_index.json), bounded in size and nesting."""
    file = pinned.file(name)
    if file is None:
        raise ModelError(f"no {name}")
    try:
        return loads(file.read(limit))
    except PathRefused as exc:
        raise ModelError(str(exc)) from None
    except JsonRefused as exc:
        raise ModelError(f"{name} is not valid JSON: {exc}") from None
