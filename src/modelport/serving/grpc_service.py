"""The gRPC front end of the Open Inference Protocol (v2): ``inference.GRPCInferenceService`` from the
protocol definitions tritonclient ships (``tritonclient.grpc.service_pb2``), served by grpcio's asyncio
server in the same event loop as HTTP. Outputs always travel as ``raw_output_contents``, as Triton's do.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelport.serving.core import Core, server_version
from modelport.serving.protocol import (
    ClientError,
    Request,
    RequestedOutput,
    array_from_bytes,
    array_to_bytes,
    element_count,
    to_datatype,
    to_dtype,
)

__all__ = ["start_grpc"]

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
_CONTENTS = {  # InferTensorContents field per v2 datatype
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


async def start_grpc(core: Core, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """A started server and the port it bound (``port`` 0: any free one)."""
    limit = core.limits.max_request_bytes
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", -1)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Service(core), server)
    bound = server.add_insecure_port(f"{host}:{port}")  # raises RuntimeError when it cannot bind
    if bound == 0:
        raise OSError("the port is in use")
    await server.start()
    return server, bound


class _Service(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    async def _guard(self, context: grpc.aio.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        if not self.core.authorized(metadata.get("authorization")):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (metadata authorization)"
            )

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.core.ready)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        model = await _call(context, lambda: self.core.model(request.name, request.version))
        return service_pb2.ModelReadyResponse(ready=model.ready and not self.core.stopping)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        return service_pb2.ServerMetadataResponse(
            name="modelport", version=server_version(), extensions=["binary_tensor_data"]
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        model = await _call(context, lambda: self.core.ready_model(request.name, request.version))
        meta = model.metadata()
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        model = await _call(context, lambda: self.core.ready_model(request.model_name, request.model_version))
        parsed = await _call(context, lambda: _decode(request))
        try:
            outputs, order = await self.core.infer(model, parsed)
        except ClientError as exc:
            await context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        response = service_pb2.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for want in order:
            array = outputs[want.name]
            response.outputs.add(name=want.name, datatype=to_datatype(str(array.dtype)), shape=list(array.shape))
            response.raw_output_contents.append(array_to_bytes(array))
        return response


async def _call(context: Any, work: Any) -> Any:
    try:
        return work()
    except ClientError as exc:
        await context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)


def _decode(request: Any) -> Request:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ClientError(400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        shape = list(tensor.shape)
        if any(d < 0 for d in shape):
            raise ClientError(400, f"input {tensor.name!r} has shape {shape}; sizes must be >= 0")
        if tensor.name in inputs:
            raise ClientError(400, f"input {tensor.name!r} is given twice")
        if raw:
            inputs[tensor.name] = array_from_bytes(raw[index], tensor.datatype, shape, tensor.name)
            continue
        field = _CONTENTS.get(tensor.datatype)
        if field is None:
            raise ClientError(400, f"input {tensor.name!r}: {tensor.datatype} travels only in raw_input_contents")
        values = list(getattr(tensor.contents, field))
        dtype = to_dtype(tensor.datatype, tensor.name)
        array, count = np.array(values, dtype=dtype), element_count(shape, tensor.name)
        if array.size != count:
            raise ClientError(400, f"input {tensor.name!r} has {array.size} values; shape {shape} needs {count}")
        inputs[tensor.name] = array.reshape(shape)
    outputs = [RequestedOutput(o.name, True) for o in request.outputs] or None
    return Request(inputs, outputs, request.id or None, {})
