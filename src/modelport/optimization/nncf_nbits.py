"""NNCF's data-aware int4 weight compression of a decoder graph (its ONNX backend), made into files ONNX
Runtime and OpenVINO run fast: 4-bit zero points packed as ONNX Runtime reads them, and NNCF's int8
layers rewritten as int8 ``MatMulNBits``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.optimization import passes
from modelport.optimization.passes import Feeds

__all__ = ["nncf_weights_nbits"]


def nncf_weights_nbits(
    src: Path,
    dst: Path,
    calibration: Feeds,
    *,
    symmetric: bool,
    group_size: int,
    ratio: float = 1.0,
    awq: bool = False,
    scale_estimation: bool = False,
    accuracy_level: int = 4,
) -> None:
    """NNCF's data-aware int4 weight compression of a decoder (``nncf.compress_weights``, its ONNX
    backend): int4 in groups of ``group_size`` along the input axis (a layer whose width it does not divide
    gets the largest power of two that does, at least 32); ``ratio`` of the int4-eligible weights at int4
    and the rest, the most sensitive on ``calibration`` by NNCF's Hessian-based metric, at int8 per output
    channel; the LM head at int8 too (NNCF's default), the embedding table left float. ``awq`` rescales channels by
    the activations seen on ``calibration``; ``scale_estimation`` refits each group's scale to minimise the
    layer's output error on it. On an opset below 21 NNCF writes int4 groups as ``MatMulNBits`` (int8
    per channel as DequantizeLinear + MatMul); ``accuracy_level`` 4 gives them int8 compute, as the
    other int4 candidates have. The source's weights are read from its folder, not loaded into the
    protobuf, so a model over 2 GB calibrates too. Written with external data (``dst.data``)."""
    nncf = passes._nncf()
    import onnx
    from nncf.onnx.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    model = onnx.load(str(src), load_external_data=False)
    advanced = AdvancedCompressionParameters(
        backend_params={BackendParameters.EXTERNAL_DATA_DIR: str(Path(src).resolve().parent)},
        group_size_fallback_mode=GroupSizeFallbackMode.ADJUST,
    )
    mode = nncf.CompressWeightsMode.INT4_SYM if symmetric else nncf.CompressWeightsMode.INT4_ASYM
    # the embedding table stays float: NNCF would put it behind a DequantizeLinear that ONNX Runtime
    # runs over the whole table at every step (the other int4 candidates keep it float too)
    scope = nncf.IgnoredScope(types=["Gather"], validate=False)
    with passes.quiet():
        out = nncf.compress_weights(
            model,
            ignored_scope=scope,
            mode=mode,
            group_size=group_size,
            ratio=ratio,
            dataset=nncf.Dataset(list(calibration)) if calibration else None,
            subset_size=max(len(calibration), 1),
            awq=awq,
            scale_estimation=scale_estimation,
            advanced_parameters=advanced,
        )
    _pack_zero_points(out)
    for node in out.graph.node:
        if node.op_type == "MatMulNBits":
            for attribute in node.attribute:
                if attribute.name == "accuracy_level":
                    attribute.i = accuracy_level
    # NNCF's int8 layers (the LM head, and what ``ratio`` leaves out of int4) are int8 per channel behind a
    # DequantizeLinear, which ONNX Runtime runs over the whole weight at every step (a 31 M LLaMA decoded
    # at 92 tokens/s so, 587 as MatMulNBits): their weights are dequantized once here and written as int8
    # MatMulNBits in blocks of 32, as ``int8-weights`` writes them
    eight = _fold_dequantized_weights(out)
    staged = dst.with_name(f".{dst.stem}-nncf.onnx") if eight else dst
    onnx.save(out, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
              location=staged.name + ".data")  # fmt: skip
    del out
    if eight:
        passes.weights_nbits(
            staged, dst, bits=8, block_size=32, symmetric=True, accuracy_level=accuracy_level, only=eight
        )
        for stale in (staged, staged.with_name(staged.name + ".data")):
            stale.unlink(missing_ok=True)


def _fold_dequantized_weights(model: Any) -> list[str]:
    """Every DequantizeLinear of constant int8 weights replaced by its float result, in place; the
    MatMuls it fed, by name."""
    from onnx import numpy_helper

    tensors = {t.name: t for t in model.graph.initializer}
    folded, used = [], set()
    for node in list(model.graph.node):
        if node.op_type != "DequantizeLinear" or not all(i in tensors for i in node.input if i):
            continue
        q, scale, *zp = (numpy_helper.to_array(tensors[i]) for i in node.input if i)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % q.ndim
        shape = [-1 if d == axis else 1 for d in range(q.ndim)] if scale.ndim == 1 else scale.shape
        weight = (q.astype(np.float32) - (zp[0].astype(np.float32).reshape(shape) if zp else 0)) * scale.reshape(shape)
        model.graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), node.output[0]))
        model.graph.node.remove(node)
        folded.append(node.output[0])
        used.update(i for i in node.input if i)
    inputs = {i for n in model.graph.node for i in n.input}
    for name in used - inputs:
        model.graph.initializer.remove(tensors[name])
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and set(folded).intersection(n.input)]


def _pack_zero_points(model: Any) -> None:
    """NNCF 3.4 writes a 4-bit ``MatMulNBits``' zero points one per byte (``[N, blocks]``), where ONNX
    Runtime reads two per byte, the even block in the low nibble (``[N, ceil(blocks / 2)]``): ONNX Runtime
    refuses such a file ("zero_points initializer shape {512,4} does not match ... [512,2]") and OpenVINO
    reads it as other numbers (top-1 agreement 0 on a 31 M LLaMA). A layer of one block is the same either
    way. Packed here, in place; zero points already packed are left as they are."""
    from onnx import numpy_helper

    tensors = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        attrs = {a.name: a.i for a in node.attribute}
        zp = tensors.get(node.input[3]) if node.op_type == "MatMulNBits" and len(node.input) > 3 else None
        blocks = -(-attrs.get("K", 0) // max(attrs.get("block_size", 1), 1))
        if zp is None or attrs.get("bits") != 4 or blocks < 2 or list(zp.dims) != [attrs["N"], blocks]:
            continue
        values = numpy_helper.to_array(zp).astype(np.uint8) & 0x0F
        if blocks % 2:
            values = np.pad(values, ((0, 0), (0, 1)))
        packed = values[:, 0::2] | (values[:, 1::2] << 4)
        zp.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(packed, np.uint8), zp.name))
