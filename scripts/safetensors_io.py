"""Minimal safetensors writer/reader (format facts: 8-byte little-endian u64 header length N, then N bytes
of JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the raw
little-endian tensor bytes; offsets are relative to the end of the header). Like Hugging Face's files,
the header is padded with spaces so the data starts at an 8-byte aligned offset."""
import json
import struct
from typing import Dict, Tuple

import numpy as np
import torch

# dtype name -> (numpy little-endian dtype used for the bytes, bytes per element)
_NUMPY_DTYPE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "U8": "<u1"}
_TORCH_DTYPE_NAME = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                     torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def _tensor_bytes(t: torch.Tensor) -> Tuple[str, bytes]:
    dtype = _TORCH_DTYPE_NAME[t.dtype]
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the 16-bit patterns
        array = t.view(torch.int16).numpy().view(np.uint16)
    else:
        array = t.numpy()
    return dtype, array.astype(_NUMPY_DTYPE[dtype], copy=False).tobytes()


def save_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str] = None) -> None:
    header: Dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs = []
    offset = 0
    # Widest dtype first, then by name (as Hugging Face's writer orders them): with the 8-byte aligned
    # data start, every tensor then begins at a multiple of its element size, so a reader can map it
    # directly as a typed array (a Float64Array/Float32Array view needs that alignment).
    for name in sorted(tensors, key=lambda k: (-tensors[k].element_size(), k)):
        dtype, data = _tensor_bytes(tensors[name])
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * ((8 - (8 + len(header_bytes)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Reads back what save_safetensors writes (and ordinary HF files of these dtypes), as torch tensors
    of the stored dtype. Checks that the data offsets tile the data section exactly."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    out = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        spans.append((begin, end))
        array = np.frombuffer(data[begin:end], dtype=_NUMPY_DTYPE[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            out[name] = torch.from_numpy(array.astype(np.int16)).view(torch.bfloat16).clone()
        else:
            out[name] = torch.from_numpy(array.astype(array.dtype.newbyteorder("="))).clone()
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise ValueError(f"{path}: data offsets leave a gap or overlap at byte {position}")
        position = end
    if position != len(data):
        raise ValueError(f"{path}: data section is {len(data)} bytes, offsets cover {position}")
    return out
