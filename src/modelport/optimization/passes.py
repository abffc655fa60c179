"""Graph and precision passes: each reads an ONNX file and writes another, through the library that owns
the transformation (ONNX Runtime's optimizer and quantization tools, NNCF). None of them judges its own
result: the search measures every output against the reference.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import MissingExtraError, import_onnxruntime
from modelport.machine import physical_cores
from modelport.runtime.ort_session import SessionSettings, open_session

__all__ = [
    "ort_offline",
    "prepare",
    "int8_dynamic",
    "int8_static",
    "fp16",
    "nncf_int8",
    "nncf_int8_weights",
    "weights_nbits",
    "lm_head",
    "decoder_blocks",
    "QUANTIZABLE",
    "quantizable_nodes",
    "activation_matmuls",
]

QUANTIZABLE = ("MatMul", "Gemm", "Conv", "ConvTranspose")  # the ops the int8 candidates quantize (not lookups)
Feeds = Sequence[dict[str, np.ndarray]]


def ort_offline(src: Path, dst: Path, level: str = "extended") -> None:
    """ONNX Runtime's graph optimizations applied once and saved: constant folding, redundant-node
    elimination and the fusions of level ``extended`` (GELU, LayerNorm, attention, MatMul+Add), which
    stay valid on any CPU (``all`` adds layout changes tied to this CPU, so it is not saved)."""
    if level not in ("basic", "extended"):
        raise ValueError(f"ort_offline saves level basic or extended, not {level!r}")
    open_session(src, ["CPUExecutionProvider"], [{}], SessionSettings(level, physical_cores()), optimized_to=dst)


def prepare(src: Path, dst: Path) -> None:
    """The copy every candidate starts from: each node has a unique name (quantization excludes nodes by
    name, and the drift report names them), and weights carry no shape annotations of their own (the
    tensor holds its shape; ONNX Runtime 1.31's quantizers fail shape inference on the dynamo exporter's
    annotations of Gemm weights: "Inferred shape and existing shape differ")."""
    import onnx

    model = onnx.load(str(src))
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)
    weights = {i.name for i in model.graph.initializer}
    kept = [v for v in model.graph.value_info if v.name not in weights]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.save(model, str(dst))


def quantizable_nodes(path: Path) -> list[tuple[str, str]]:
    """(name, op type) of the nodes int8 quantization may replace: every Gemm and Conv, and the MatMuls
    with a weight (not those of two activations, see ``activation_matmuls``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    skip = set(activation_matmuls(model))
    return [(n.name, n.op_type) for n in model.graph.node if n.op_type in QUANTIZABLE and n.name not in skip]


def activation_matmuls(model: Any) -> list[str]:
    """The MatMuls of two activations (attention's query x key and probabilities x value). They hold a
    few percent of a transformer's work, and int8 there costs the most accuracy: the scores' error is
    exponentiated by the softmax after them, and probabilities are mostly tiny values that one per-tensor
    scale rounds to zero. Every int8 candidate keeps them in float."""
    constant = {i.name for i in model.graph.initializer}
    constant.update(o for n in model.graph.node if n.op_type == "Constant" for o in n.output)
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not constant.intersection(n.input)]


def int8_dynamic(src: Path, dst: Path, exclude: Iterable[str] = (), *, per_channel: bool = True) -> None:
    """Weights int8 ahead of time, activations quantized per run from their own range
    (``onnxruntime.quantization.quantize_dynamic``): no calibration, MatMul-heavy models gain most."""
    quant = _quantization()
    with quiet():
        quant.quantize_dynamic(
            str(src),
            str(dst),
            weight_type=quant.QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_exclude=list(exclude),
            extra_options={"MatMulConstBOnly": True},
        )


def int8_static(
    src: Path,
    dst: Path,
    calibration: Feeds,
    exclude: Iterable[str] = (),
    *,
    method: str = "minmax",
    per_channel: bool = True,
) -> None:
    """Weights and activations int8 with ranges calibrated on ``calibration``, as QuantizeLinear /
    DequantizeLinear pairs (QDQ), which ONNX Runtime and OpenVINO both run as int8 kernels."""
    quant = _quantization()
    methods = {
        "minmax": quant.CalibrationMethod.MinMax,
        "entropy": quant.CalibrationMethod.Entropy,
        "percentile": quant.CalibrationMethod.Percentile,
    }
    with quiet():
        quant.quantize_static(
            str(src),
            str(dst),
            _Reader(calibration),
            quant_format=quant.QuantFormat.QDQ,
            activation_type=quant.QuantType.QUInt8,
            weight_type=quant.QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=methods[method],
            op_types_to_quantize=list(QUANTIZABLE),
            nodes_to_exclude=list(exclude),
            extra_options={"MatMulConstBOnly": True},
        )


def weights_nbits(
    src: Path,
    dst: Path,
    exclude: Iterable[str] = (),
    *,
    bits: int = 4,
    block_size: int = 32,
    symmetric: bool = True,
    accuracy_level: int | None = None,
    only: Iterable[str] | None = None,
) -> None:
    """Weight-only quantization of every MatMul with a constant weight to ONNX Runtime's ``MatMulNBits``
    (``onnxruntime.quantization``'s ``MatMulNBitsQuantizer``): ``bits`` 4 or 8, one scale (and, unless
    ``symmetric``, a zero point) per ``block_size`` weights along the input axis; activations stay float.
    ``accuracy_level`` 4 lets the kernel quantize activations to int8 on the fly (VNNI), 0/None keeps
    them float. ``only``: quantize these nodes and no others. Written with external data (``dst.data``)."""
    import onnx

    quant = _quantization()
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # its logger writes a line per node through a handler of its own (not stderr as redirected by quiet())
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    model = onnx.load(str(src))
    with quiet():
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=bits,
            block_size=block_size,
            is_symmetric=symmetric,
            accuracy_level=accuracy_level,
            nodes_to_exclude=list(exclude),
            nodes_to_include=list(only) if only is not None else None,
            quant_format=quant.QuantFormat.QOperator,
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
    del model
    out = quantizer.model.model
    onnx.save(out, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=dst.name + ".data")


def lm_head(path: Path) -> str | None:
    """The MatMul that makes a decoder's ``logits``: walking back from that output through the nodes that
    feed it, the first MatMul with a constant weight."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    constant = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    todo, seen = ["logits"], set()
    while todo:
        node = producer.get(todo.pop(0))
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "MatMul" and constant.intersection(node.input):
            return node.name
        todo += [i for i in node.input if i and i not in constant]
    return None


def decoder_blocks(path: Path) -> list[list[str]]:
    """The MatMuls with a constant weight of each decoder block, first block first (the LM head left
    out): the graph's weight MatMuls in the exporter's order (the forward pass's), cut into as many equal
    runs as the graph has ``past_key_values.N.key`` inputs. A graph whose MatMuls do not divide evenly
    (a block with more projections than another) is refused rather than cut in the wrong places."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    layers = sum(1 for i in model.graph.input if i.name.startswith("past_key_values.") and i.name.endswith(".key"))
    constant = {i.name for i in model.graph.initializer}
    constant.update(o for n in model.graph.node if n.op_type == "Constant" for o in n.output)
    head = lm_head(path)
    weighted = [n.name for n in model.graph.node
                if n.op_type == "MatMul" and constant.intersection(n.input) and n.name != head]  # fmt: skip
    if not layers or not weighted or len(weighted) % layers:
        raise ValueError(
            f"cannot tell the decoder blocks apart: {len(weighted)} weight MatMuls over {layers} cache layers"
        )
    size = len(weighted) // layers
    return [weighted[i : i + size] for i in range(0, len(weighted), size)]


def fp16(src: Path, dst: Path, exclude: Iterable[str] = ()) -> None:
    """Weights and compute in fp16, inputs and outputs kept fp32; nodes in ``exclude`` stay fp32."""
    import onnx

    import_onnxruntime()
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=list(exclude))
    onnx.save(converted, str(dst))


def nncf_int8(src: Path, dst: Path, calibration: Feeds, exclude: Iterable[str] = (), *, transformer: bool) -> None:
    """NNCF's post-training int8 (its ONNX backend: QDQ pairs placed where OpenVINO runs int8 kernels;
    for transformers, NNCF's transformer preset keeps the sensitive spots in float)."""
    nncf = _nncf()
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    model = onnx.load(str(src))
    # Embedding lookups (Gather) stay float: int8 tables cost accuracy and save no time. SmoothQuant
    # (on by default for transformers) moves activation outliers into weights that are then quantized
    # per tensor; on the models measured it lowered the accuracy it was meant to raise, so it is off.
    scope = nncf.IgnoredScope(names=[*exclude, *activation_matmuls(model)], types=["Gather"], validate=False)
    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1.0))
    with quiet():  # NNCF draws progress bars on the process's stdout
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(calibration)),
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
            subset_size=len(calibration),
            ignored_scope=scope,
            advanced_parameters=advanced,
        )
    onnx.save(quantized, str(dst))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Library chatter (progress bars, "consider pre-processing" warnings) kept off the user's terminal."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def nncf_int8_weights(src: Path, dst: Path, exclude: Iterable[str] = ()) -> None:
    """NNCF's int8 weight compression (asymmetric, per output channel): weights stored int8 behind
    DequantizeLinear, activations untouched in the file. OpenVINO's CPU plugin then quantizes the
    activations of those MatMuls per run in small groups, so the matrix work is int8 while the error
    stays close to fp32's (unlike per-tensor int8 activations)."""
    nncf = _nncf()
    import onnx

    model = onnx.load(str(src))
    # Convolutions stay float: OpenVINO's per-run activation quantization is for MatMuls, and its ONNX
    # reader refuses the per-channel DequantizeLinear NNCF writes for a Conv weight ("Dequantization
    # scale needs to be a scalar or a vector"), so ResNet-50's compressed model did not compile.
    scope = nncf.IgnoredScope(names=list(exclude), types=["Conv", "ConvTranspose"], validate=False)
    with quiet():
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=scope)
    onnx.save(compressed, str(dst))


def _nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise MissingExtraError("NNCF int8 candidates", "openvino") from None
    nncf.set_log_level(logging.ERROR)
    return nncf


def _quantization() -> Any:
    import_onnxruntime()
    import onnxruntime.quantization as quant

    return quant


class _Reader:
    """``onnxruntime.quantization``'s CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: Feeds) -> None:
        self._feeds = list(feeds)
        self._next: Iterator[dict[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._next, None)

    def rewind(self) -> None:  # some calibrators read twice
        self._next = iter(self._feeds)
