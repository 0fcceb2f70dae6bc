"""On-disk tensor formats: safetensors headers (parsed and validated, local or fetched bytes),
reading one tensor straight into a destination's storage, and `.bin` pickles loaded safely.

No I/O policy here (caching, streaming, S3): `hf`, `stream` and `export` build on these.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

from dsllm.errors import UserError

ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes are in a safetensors file."""

    dtype: str  # torch dtype name
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int


def read_header(path: str) -> dict[str, TensorEntry]:
    """Parse and validate a local safetensors file's header (see `parse_header`)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n = header_length(f.read(8), size, path)
        return parse_header(f.read(n), size, path)


def header_length(head: bytes, size: int, where: str) -> int:
    """The JSON header's length from a safetensors file's first 8 bytes, checked against its size."""
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if n <= 0 or n > min(size - 8, 100 << 20):
        raise UserError(f"{where}: corrupt safetensors header (header length {n} does not fit a {size}-byte file)")
    return n


def parse_header(blob: bytes, size: int, where: str) -> dict[str, TensorEntry]:
    """Validate a safetensors JSON header (`blob`, the bytes after the 8-byte length) of a
    `size`-byte file: known dtypes, offsets that fit the shapes, tensor data contiguous and ending
    exactly at the end of the file (so a truncated or padded file is caught)."""
    try:
        header = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: corrupt safetensors header (not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise UserError(f"{where}: corrupt safetensors header (not a JSON object)")
    import torch

    out, base, spans = {}, 8 + len(blob), []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = ST_DTYPES[e["dtype"]], tuple(int(s) for s in e["shape"]), e["data_offsets"]
            lo, hi = int(lo), int(hi)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}: corrupt safetensors header (bad entry for {name!r})") from None
        numel = 1
        for s in shape:
            numel *= s
        if hi - lo != numel * getattr(torch, dtype).itemsize or lo < 0 or base + hi > size:
            raise UserError(
                f"{where}: corrupt safetensors header ({name}: offsets {lo}-{hi} do not fit "
                f"shape {list(shape)} {e['dtype']} in a {size}-byte file)"
            )
        out[name] = TensorEntry(dtype, shape, base + lo, base + hi)
        spans.append((lo, hi))
    spans.sort()
    if spans and (
        spans[0][0] != 0 or any(a[1] != b[0] for a, b in zip(spans, spans[1:])) or base + spans[-1][1] != size
    ):
        raise UserError(
            f"{where}: corrupt safetensors file (tensor data is not contiguous or the file "
            f"is {size} bytes, not {base + spans[-1][1]}; truncated?)"
        )
    return out


def bytes_view(t):
    """A writable uint8 numpy view of a contiguous CPU tensor's storage."""
    import torch

    return t.reshape(-1).view(torch.uint8).numpy()


def read_entry(f, e: TensorEntry, dst) -> None:
    """Read one safetensors tensor into `dst` (same shape), converting dtype when needed."""
    import torch

    src_dtype = getattr(torch, e.dtype)
    target = (
        dst
        if (dst.dtype == src_dtype and dst.is_contiguous() and dst.device.type == "cpu")
        else torch.empty(e.shape, dtype=src_dtype)
    )
    view = memoryview(bytes_view(target))
    f.seek(e.start)
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise UserError(f"{f.name}: truncated at byte {e.start + got}")
        got += n
    if target is not dst:
        dst.copy_(target)


def read_rows(f, e: TensorEntry, dst, start: int) -> None:
    """Read rows [start, start + len(dst)) (dim 0) of one safetensors tensor into `dst`: only those
    bytes are read (a row-major tensor's rows are one contiguous byte range). For loading one
    rank's shard of a weight sharded on dim 0 (FSDP2) without reading the whole tensor."""
    import torch

    src_dtype = getattr(torch, e.dtype)
    row_bytes = src_dtype.itemsize
    for s in e.shape[1:]:
        row_bytes *= s
    stop = start + (dst.shape[0] if dst.ndim else 1)
    if not e.shape or start < 0 or stop > e.shape[0]:
        raise ValueError(f"rows {start}:{stop} outside a tensor of shape {list(e.shape)}")
    part = TensorEntry(e.dtype, (stop - start, *e.shape[1:]), e.start + start * row_bytes, e.start + stop * row_bytes)
    read_entry(f, part, dst)


def load_bin(path: str) -> dict:
    """`torch.load(weights_only=True, mmap=True)`; refuses a pickle holding anything but tensors."""
    import torch

    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            sd = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        reason = next((line for line in first if "Unsupported" in line or "GLOBAL" in line), first[0] if first else "")
        raise UserError(
            f"{path}: refused: the pickle holds objects other than tensors "
            f"(weights_only load failed: {reason.strip()[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(sd, dict):
        raise UserError(f"{path}: refused: expected a mapping of tensor names to tensors, got {type(sd).__name__}")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise UserError(f"{path}: refused: the pickle holds a {type(v).__name__} at {k!r}, not a tensor")
    return sd
