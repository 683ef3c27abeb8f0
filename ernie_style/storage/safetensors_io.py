"""Stream ``.safetensors`` files with numpy alone, including bfloat16.

Format (https://github.com/huggingface/safetensors): ``<Q`` header length N, N bytes of JSON
``{"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}}``
padded with spaces, then the data buffer; offsets are relative to the buffer, contiguous and
non-overlapping. numpy has no bfloat16, so bf16 tensors are converted here (round to nearest
even on write, exact widening to float32 on read). Tensors are written one at a time, so
peak memory stays at the input plus one converted tensor.
"""
import json
import os
import struct

import numpy as np

from ernie_style.storage.errors import ModelDirError

_NP_TO_ST = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}
_ST_TO_NP = {v: k for k, v in _NP_TO_ST.items()}
_ST_TO_NP["BF16"] = np.dtype("uint16")  # raw bits, widened on read

DTYPES = ("float32", "float16", "bfloat16")


def float32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even like torch; NaN stays NaN."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        rounded[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return rounded


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exact."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def _encode(a: np.ndarray, dtype: str):
    """(bytes-like array, safetensors dtype tag) for float32 array ``a`` written as ``dtype``."""
    if dtype == "bfloat16":
        return float32_to_bf16_bits(a), "BF16"
    if dtype == "float16":
        return np.ascontiguousarray(a, dtype=np.float16), "F16"
    return np.ascontiguousarray(a, dtype=np.float32), "F32"


def round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """float32 ``a`` rounded as :func:`write_safetensors` stores it in ``dtype``, widened back to float32 (exact):
    the values a reader of that file gets."""
    enc, tag = _encode(a, dtype)
    return bf16_bits_to_float32(enc) if tag == "BF16" else enc.astype(np.float32)


def write_safetensors(path, tensors: dict, dtype: str = "float32", metadata=None) -> None:
    """Write ``{name: float ndarray}`` to ``path``, floating tensors converted to ``dtype``.

    Every tensor gets its own storage (no aliasing), as transformers 5.x requires.
    """
    assert dtype in DTYPES, dtype
    names = sorted(tensors)
    header, offset = {}, 0
    tag_of = {}
    for name in names:
        a = tensors[name]
        tag = {"bfloat16": "BF16", "float16": "F16"}.get(dtype, "F32") if a.dtype.kind == "f" else _NP_TO_ST[a.dtype]
        itemsize = _ST_TO_NP[tag].itemsize
        nbytes = int(np.prod(a.shape, dtype=np.int64)) * itemsize
        header[name] = {"dtype": tag, "shape": list(a.shape), "data_offsets": [offset, offset + nbytes]}
        tag_of[name] = tag
        offset += nbytes
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            a = tensors[name]
            enc, tag = _encode(a, dtype) if a.dtype.kind == "f" else (np.ascontiguousarray(a), tag_of[name])
            assert tag == tag_of[name]
            f.write(memoryview(enc).cast("B"))


def read_safetensors(path, widen=True) -> tuple:
    """Read ``path`` -> (``{name: ndarray}``, ``{name: dtype tag}``, metadata).

    Arrays are views of a memmap (read-only); BF16 and F16 are widened to float32 when ``widen``.
    Raises ModelDirError naming the file for truncated or malformed files.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelDirError(f"{path}: truncated safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise ModelDirError(f"{path}: truncated or corrupt safetensors file (header of {n} bytes, file {size} bytes)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelDirError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ModelDirError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_len = 8 + n, size - 8 - n
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_len,)) if data_len else np.zeros(0, np.uint8)
    out, tags = {}, {}
    for name, info in header.items():
        try:
            tag, shape, (b, e) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
            npdt = _ST_TO_NP[tag]
        except (KeyError, TypeError, ValueError):
            raise ModelDirError(f"{path}: tensor {name!r} has an unsupported or malformed header entry {info!r}") from None
        count = int(np.prod(shape, dtype=np.int64))
        if e - b != count * npdt.itemsize or b < 0:
            raise ModelDirError(f"{path}: tensor {name!r} byte range {b}..{e} does not match shape {shape} {tag}")
        if e > data_len:
            raise ModelDirError(f"{path}: truncated: tensor {name!r} ends at byte {e} of a {data_len}-byte data section")
        a = mm[b:e].view(npdt).reshape(shape)
        if widen and tag == "BF16":
            a = bf16_bits_to_float32(a)
        elif widen and tag == "F16":
            a = a.astype(np.float32)
        out[name], tags[name] = a, tag
    return out, tags, metadata
