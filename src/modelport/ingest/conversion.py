"""The two steps of an upgrade that can refuse, each refusal in one line: onnx's version converter lifting
the default domain's opset (its missing adapter, a symbolic dim its adapters cannot take), and onnxruntime
loading a file (an op it lacks at any opset, a kernel it no longer has, a locale the machine lacks).
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx

from modelport.errors import ModelportError, first_line, import_onnxruntime
from modelport.runtime.ort_session import cpu_session

__all__ = ["convert", "load_error", "refusal", "ort_reason", "ort_version"]

_UNKNOWN_OP = re.compile(r"(\S*):(\w+)\((-?\d+)\) is not a registered function/op")
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\)")
_LOCALE = re.compile(r"Failed to construct locale with name:\s*([^:\s]+)")


def convert(model: onnx.ModelProto, source: int | None, target: int, notes: list[str]) -> onnx.ModelProto:
    """``model`` lifted from opset ``source`` to ``target``; what had to be cleaned up goes to ``notes``."""
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, target)
    except Exception as exc:  # the converter's C++ asserts arrive as RuntimeError
        text = " ".join(str(exc).split())
        where = f"from opset {source} to {target}"
        hint = "try another --opset, or re-export the model from its source"
        if match := re.search(r"No Adapter.*?(?:\$(\d+) )?[Ff]or (\w+)", text):
            since = f" (version {match[1]})" if match[1] else ""
            why = f"it has no adapter for {match[2]}{since}"
        elif match := re.search(r"(\S+) Dimension is a param instead of an int", text):
            why = f"its adapters need fixed sizes, and dim {match[1]!r} is symbolic"
            hint = (
                f"upgrade a copy with {match[1]!r} fixed to a size (onnx.tools.update_model_dims."
                "update_inputs_outputs_dims), or re-export the model from its source"
            )
        else:
            failed = text.split("failed: ", 1)[-1] if "failed: " in text else first_line(exc)
            op = re.search(r"adapt_([a-z]+)_\d+_\d+", text)
            why = (f"{op[1]}: " if op else "") + failed[:200]
        raise ModelportError(
            f"onnx {onnx.__version__}'s version converter cannot lift the file {where}: {why}", hint
        ) from None
    # the converter leaves some value_info it adds (the output of an Unsqueeze it inserted) without an element
    # type, which onnxruntime refuses ("Invalid tensor data type 0"); a value_info is only a hint: drop those
    typed = [v for v in upgraded.graph.value_info if v.type.tensor_type.elem_type or not v.type.HasField("tensor_type")]
    if len(typed) < len(upgraded.graph.value_info):
        dropped = len(upgraded.graph.value_info) - len(typed)
        notes.append(f"dropped {dropped} value_info the converter left without a type")
        del upgraded.graph.value_info[:]
        upgraded.graph.value_info.extend(typed)
    return upgraded


def load_error(model: Path | onnx.ModelProto) -> str | None:
    """None when onnxruntime creates a CPU session for the model; its reason otherwise."""
    try:
        cpu_session(model, optimization="disabled")
    except ModelportError:
        raise
    except Exception as exc:
        return " ".join(str(exc).split())
    return None


def refusal(text: str, model_path: Path, context: str) -> ModelportError:
    """onnxruntime's load failure as what the machine lacks, in one line."""
    version = ort_version()
    if match := _LOCALE.search(text):
        return ModelportError(
            f"{model_path} needs the locale {match[1]}, which this machine lacks (onnxruntime builds its "
            "StringNormalizer with it)",
            f"install that locale (locale-gen {match[1]}, or the distribution's language pack), then run again",
        )
    if match := _UNKNOWN_OP.search(text):
        domain, op = match[1] or "ai.onnx", match[2]
        if "training" in domain or op.endswith("Grad"):
            return ModelportError(
                f"{model_path} holds {op} (domain {domain}), a training-only op: onnxruntime {version} runs "
                "inference and has no such op, at any opset",
                "export the inference graph, without its optimizer and gradient ops",
            )
        return ModelportError(
            f"{model_path} holds {op} (domain {domain}), which neither onnxruntime {version} has nor the version "
            "converter can lift into an op it has",
            "register the library that implements it (SessionOptions.register_custom_ops_library), or re-export "
            "without it",
        )
    if match := _NO_KERNEL.search(text):
        return ModelportError(
            f"{context}: it has no kernel for {match[1]}({match[2]})",
            "try a higher --opset (e.g. --opset 13), or re-export the model from its source",
        )
    return ModelportError(f"{context}: {ort_reason(text)}", f"modelport doctor {model_path} says more")


def ort_reason(exc: BaseException | str) -> str:
    """onnxruntime's message without its status prefix and source location."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = text.split("Status Message:", 1)[-1].strip()
    text = re.sub(r"^/\S+:\d+ ", "", text)
    if " was false. " in text:  # ORT_ENFORCE(cond, message): the message is what a user can read
        text = text.split(" was false. ", 1)[1]
    return text[:240]


def ort_version() -> str:
    return str(import_onnxruntime().__version__)
