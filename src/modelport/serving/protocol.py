"""The Open Inference Protocol (v2) on the wire: datatypes, JSON tensors and the binary tensor data
extension for HTTP, and the tensors of gRPC's ``ModelInferRequest``.

Everything here turns bytes from a client into arrays, or arrays into bytes, and refuses what does not
fit with a ``ClientError`` that carries the HTTP status: a client's mistake is a 4xx, never a 500.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.spec import MAX_DIM

try:
    import orjson
except ImportError:  # serving without the serve extra's orjson (a Triton environment): json alone
    orjson = None

__all__ = [
    "ClientError",
    "Request",
    "RequestedOutput",
    "to_datatype",
    "to_dtype",
    "decode_http",
    "encode_http",
    "array_from_bytes",
    "array_to_bytes",
    "element_count",
]

_DATATYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {str(dtype): name for name, dtype in _DATATYPES.items()}
_BY_DTYPE.update({"str": "BYTES", "bytes": "BYTES", "string": "BYTES", "bfloat16": "BF16"})
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_RANK = 32  # numpy's limit is 64; no model input has more


class ClientError(Exception):
    """A request the server cannot answer because of what the client sent (or when it sent it)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}  # e.g. Retry-After with a 429


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class Request:
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None = None  # None: every output
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_default: bool = False  # the request's ``binary_data_output`` parameter


def to_datatype(dtype: str) -> str:
    """The v2 name of a numpy dtype name (``float32`` → ``FP32``)."""
    return _BY_DTYPE.get(dtype, dtype.upper())


def to_dtype(datatype: str, name: str) -> np.dtype:
    try:
        return _DATATYPES[datatype]
    except KeyError:
        raise ClientError(
            400, f"input {name!r} has datatype {datatype!r}; the v2 datatypes are {', '.join(_DATATYPES)}"
        ) from None


def array_from_bytes(raw: bytes | memoryview, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """A tensor from its raw row-major little-endian bytes (``BYTES``: each element a 4-byte length, then
    the element), the size checked against the shape before anything is built."""
    dtype = to_dtype(datatype, name)
    count = element_count(shape, name)
    if datatype == "BYTES":
        items, offset, view = [], 0, memoryview(raw)
        while offset < len(view):
            if offset + 4 > len(view):
                raise ClientError(400, f"input {name!r}: BYTES data ends inside an element's length")
            (length,) = struct.unpack_from("<I", view, offset)
            offset += 4
            if offset + length > len(view):
                raise ClientError(400, f"input {name!r}: a BYTES element runs past the end of the data")
            items.append(bytes(view[offset : offset + length]))
            offset += length
        if len(items) != count:
            raise ClientError(400, f"input {name!r} has {len(items)} BYTES elements; shape {shape} needs {count}")
        return np.array(items, dtype=object).reshape(shape)
    if len(raw) != count * dtype.itemsize:
        raise ClientError(
            400, f"input {name!r} has {len(raw)} bytes; shape {shape} of {datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def array_to_bytes(array: np.ndarray) -> bytes:
    if array.dtype == object or array.dtype.kind in "SU":
        parts = []
        for item in array.ravel():
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _loads(text: bytes) -> Any:
    """orjson (the serve extra) parses a request's JSON several times faster than json, which the server
    spends most of a small request on; json still reads what orjson refuses and Python clients send
    (NaN and Infinity literals, integers beyond 64 bits) and is the error's voice."""
    if orjson is not None:
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(text)
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientError(400, f"the request body is not JSON ({exc})") from None
    except RecursionError:  # json's C scanner counts its depth against Python's recursion limit
        raise ClientError(400, "the request body's JSON is nested too deeply") from None


def decode_http(body: bytes, header_length: str | None) -> Request:
    """An HTTP/REST infer request: a JSON header, optionally followed by binary tensor data
    (``Inference-Header-Content-Length`` says where the JSON ends)."""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise ClientError(400, f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= split <= len(body):
            raise ClientError(400, f"{HEADER_LENGTH} is {split}, but the body has {len(body)} bytes")
    else:
        split = len(body)
    header = _loads(body[:split])
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise ClientError(400, "the request needs an 'inputs' list (Open Inference Protocol v2)")
    parameters = _object(header.get("parameters", {}), "parameters")
    binary = memoryview(body)[split:]
    inputs: dict[str, np.ndarray] = {}
    for item in header["inputs"]:
        item = _object(item, "inputs[]")
        name, datatype, shape = _tensor_header(item)
        if name in inputs:
            raise ClientError(400, f"input {name!r} is given twice")
        size = _object(item.get("parameters", {}), f"parameters of {name!r}").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or size > len(binary):
                raise ClientError(400, f"input {name!r}: binary_data_size {size!r} exceeds the binary data left")
            inputs[name] = array_from_bytes(binary[:size], datatype, shape, name)
            binary = binary[size:]
        elif "data" in item:
            inputs[name] = _from_json(item["data"], datatype, shape, name)
        else:
            raise ClientError(400, f"input {name!r} has neither 'data' nor a binary_data_size parameter")
    if len(binary):
        raise ClientError(400, f"{len(binary)} bytes of binary data belong to no input")
    outputs = None
    if "outputs" in header:
        if not isinstance(header["outputs"], list):
            raise ClientError(400, "'outputs' must be a list of {\"name\": ...}")
        outputs = []
        for item in header["outputs"]:
            item = _object(item, "outputs[]")
            if not isinstance(item.get("name"), str):
                raise ClientError(400, "every requested output needs a 'name'")
            flag = _object(item.get("parameters", {}), "output parameters").get("binary_data")
            outputs.append(
                RequestedOutput(
                    item["name"], bool(parameters.get("binary_data_output")) if flag is None else bool(flag)
                )
            )
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ClientError(400, "'id' must be a string")
    return Request(inputs, outputs, request_id, parameters, bool(parameters.get("binary_data_output")))


def encode_http(
    model: str, version: str, request: Request, outputs: dict[str, np.ndarray], order: list[RequestedOutput]
) -> tuple[bytes, int | None]:
    """The response body and, when any output travels as binary, the length of its JSON part."""
    described, blobs = [], []
    for want in order:
        array = outputs[want.name]
        entry: dict[str, Any] = {
            "name": want.name,
            "datatype": to_datatype(str(array.dtype)),
            "shape": list(array.shape),
        }
        if want.binary:
            blob = array_to_bytes(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _to_json(array)
        described.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":")).encode()
    return (header + b"".join(blobs), len(header)) if blobs else (header, None)


def _tensor_header(item: dict[str, Any]) -> tuple[str, str, list[int]]:
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list):
        raise ClientError(400, "every input needs 'name', 'datatype' and 'shape'")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape):
        raise ClientError(400, f"input {name!r} has shape {_short(shape)}; sizes must be integers from 0 to {MAX_DIM}")
    if len(shape) > MAX_RANK:
        raise ClientError(400, f"input {name!r} has {len(shape)} dimensions; at most {MAX_RANK} are supported")
    return name, datatype, shape


def element_count(shape: list[int], name: str) -> int:
    count = math.prod(shape)
    if count > 2**31:
        raise ClientError(413, f"input {name!r} of shape {shape} has {count} elements")
    return count


def _from_json(data: Any, datatype: str, shape: list[int], name: str) -> np.ndarray:
    dtype = to_dtype(datatype, name)
    count = element_count(shape, name)
    try:
        if datatype == "BYTES":
            flat = np.array(
                [s.encode() if isinstance(s, str) else s for s in np.ravel(np.array(data, dtype=object))], dtype=object
            )
        else:
            flat = np.asarray(data, dtype=dtype).ravel()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ClientError(400, f"input {name!r}: its data cannot be read as {datatype} ({exc})") from None
    if flat.size != count:
        raise ClientError(400, f"input {name!r} has {flat.size} values; shape {shape} needs {count}")
    return flat.reshape(shape)


def _to_json(array: np.ndarray) -> list[Any]:
    if array.dtype == object or array.dtype.kind in "SU":
        return [x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in array.ravel()]
    return array.ravel().tolist()


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientError(400, f"{what} must be a JSON object")
    return value
