"""The weights checksum of an ONNX file (``facetrack.weights_sha256``), read without the
``onnx`` package (not a run-time dependency): a small reader of the protobuf wire format walks
``ModelProto.graph.initializer`` and hashes each tensor's name and values exactly as
:func:`facetrack.train.export.to_onnx.weights_sha256` does (name bytes, then the array's
bytes as ``onnx.numpy_helper.to_array`` gives them, little-endian, in graph order).

Field numbers (onnx.proto3): ``ModelProto.graph`` 7; ``GraphProto.initializer`` 5;
``TensorProto``: ``dims`` 1, ``data_type`` 2, ``float_data`` 4, ``int32_data`` 5,
``int64_data`` 7, ``name`` 8, ``raw_data`` 9, ``double_data`` 10, ``uint64_data`` 11,
``external_data`` 13, ``data_location`` 14.
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterator

import numpy as np

#: TensorProto.DataType -> numpy dtype of ``to_array``'s result, for the types facetrack's
#: exports and int8 variants hold (and the other plain numeric ones)
DTYPES: dict[int, np.dtype] = {1: np.dtype("<f4"), 2: np.dtype("u1"), 3: np.dtype("i1"), 4: np.dtype("<u2"), 5: np.dtype("<i2"),
                               6: np.dtype("<i4"), 7: np.dtype("<i8"), 9: np.dtype("?"), 10: np.dtype("<f2"),
                               11: np.dtype("<f8"), 12: np.dtype("<u4"), 13: np.dtype("<u8")}
#: types whose values sit in ``int32_data`` when not raw (FLOAT16: the bits)
_INT32_FIELD = {2, 3, 4, 5, 6, 9, 10}


class WeightsFormatError(ValueError):
    """The file's initializers cannot be hashed here (not protobuf, an unknown tensor type,
    weights in an external file); the message says which."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise WeightsFormatError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise WeightsFormatError("varint too long")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field number, wire type, value)`` of one message: an int for varints and fixed
    widths (as unsigned), a memoryview for length-delimited fields."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield field, wire, value
        elif wire == 1:
            if i + 8 > n:
                raise WeightsFormatError("truncated fixed64")
            yield field, wire, int.from_bytes(buf[i:i + 8], "little")
            i += 8
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise WeightsFormatError("truncated field")
            yield field, wire, buf[i:i + size]
            i += size
        elif wire == 5:
            if i + 4 > n:
                raise WeightsFormatError("truncated fixed32")
            yield field, wire, int.from_bytes(buf[i:i + 4], "little")
            i += 4
        else:
            raise WeightsFormatError(f"wire type {wire} (not protobuf)")


def _varints(value: int | memoryview) -> list[int]:
    """A repeated varint field's values: packed (a memoryview) or one unpacked value."""
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _tensor_bytes(msg: memoryview) -> tuple[str, bytes | memoryview]:
    """(name, the bytes ``to_array(tensor).tobytes()`` gives on a little-endian machine)."""
    name, dtype, external = "", 1, False
    raw: memoryview | None = None
    fixed: list[bytes] = []  # float_data / double_data, packed or not
    ints: list[int] = []  # int32_data / int64_data / uint64_data
    for field, wire, value in _fields(msg):
        if field == 8 and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif field == 2 and wire == 0:
            dtype = int(value)
        elif field == 9 and wire == 2:
            raw = value  # hashed in place: no copy of the weights
        elif field == 14 and wire == 0:
            external = external or value == 1
        elif field == 13:
            external = True
        elif field in (4, 10):
            width = 4 if field == 4 else 8
            fixed.append(bytes(value) if wire == 2 else int(value).to_bytes(width, "little"))
        elif field in (5, 7, 11):
            ints.extend(_varints(value))
    if external:
        raise WeightsFormatError(f"initializer {name!r} keeps its weights in an external file")
    if dtype not in DTYPES:
        raise WeightsFormatError(f"initializer {name!r} has tensor type {dtype}, which facetrack does not hash")
    if raw is not None:
        return name, raw
    dt = DTYPES[dtype]
    if dtype in (1, 11):
        return name, b"".join(fixed)
    if dtype in _INT32_FIELD:
        values = [_signed(v) & 0xFFFFFFFF for v in ints]
        arr = np.array(values, np.uint32).view(np.int32)
        if dtype == 10:  # FLOAT16: the bits are stored as uint16 in int32_data
            return name, arr.astype(np.uint16).tobytes()
        return name, arr.astype(dt).tobytes()
    if dtype == 7:
        return name, np.array([_signed(v) for v in ints], np.int64).tobytes()
    return name, np.array(ints, np.uint64).astype(dt).tobytes()  # UINT32, UINT64


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) over the initializers of the ONNX file ``path``: each one's name (UTF-8)
    then its values, in graph order, the digest :func:`facetrack.train.export.to_onnx.weights_sha256`
    computes with the ``onnx`` package. Raises :class:`WeightsFormatError` when the file cannot
    be hashed and ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        data = memoryview(f.read())
    h = hashlib.sha256()
    for field, wire, graph in _fields(data):
        if field != 7 or wire != 2:
            continue
        assert isinstance(graph, memoryview)
        for gfield, gwire, init in _fields(graph):
            if gfield == 5 and gwire == 2:
                assert isinstance(init, memoryview)
                name, values = _tensor_bytes(init)
                h.update(name.encode())
                h.update(values)
    return h.hexdigest()
