"""The manifest schema, checked on every read: a bundle may come from anyone.

``validate(manifest)`` raises ``BundleError`` (exit 2) on anything this modelport did not write:
an unknown or malformed field, a file name that is not a plain name inside the bundle, a
``model.onnx`` that is not listed with its sha256. Only after it passes does any other code look
at the manifest, so nothing downstream meets a ``KeyError`` or a path outside the bundle.
"""

from __future__ import annotations

import math
import re
from typing import Any

from modelport.errors import BundleError
from modelport.spec import DTYPES, MAX_DIM, range_problem

__all__ = ["validate", "FIELDS", "plain_name"]

FIELDS = (
    "format",
    "format_version",
    "status",
    "created",
    "source",
    "inputs",
    "outputs",
    "opset",
    "capture",
    "versions",
    "parity",
    "timings",
    "optimizations",
    "notes",
    "files",
    "generation",
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TENSOR = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")  # an imported graph's input: "input:0", "input.1", "0"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BACKEND = re.compile(r"^[a-z-]+(:[a-z0-9,]+)?$")
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class _Bad(Exception):
    pass


def validate(manifest: Any, model_file: str, manifest_file: str) -> None:
    """Raise ``BundleError`` unless ``manifest`` is one this modelport could have written."""
    try:
        _check(manifest, model_file, manifest_file)
    except _Bad as exc:
        raise BundleError(
            f"{manifest_file} is malformed: {exc}",
            "re-export the bundle; modelport reads only manifests it could have written",
        ) from None


def plain_name(name: str) -> bool:
    """A file name with no directory part, not hidden, not ``..``: it can only mean a file in the bundle."""
    return bool(_PLAIN.match(name)) and ".." not in name


def _check(m: Any, model_file: str, manifest_file: str) -> None:
    _expect(isinstance(m, dict), "not a JSON object")
    unknown = sorted(set(m) - set(FIELDS))
    _expect(not unknown, f"unknown field {unknown[0]!r}" if unknown else "")
    _expect(m.get("format", "modelport-bundle") == "modelport-bundle", "'format' is not 'modelport-bundle'")
    for key in ("status", "created"):
        _expect(isinstance(m.get(key, ""), str), f"{key!r} is not a string")
    _check_source(m.get("source", {}))
    _check_inputs(m.get("inputs"))
    _check_outputs(m.get("outputs", []))
    _check_files(m.get("files"), model_file, manifest_file)
    parity = m.get("parity")
    _expect(parity is None or isinstance(parity, dict), "'parity' is not an object")
    for key in ("atol", "rtol"):
        value = (parity or {}).get(key, 0.0)
        _expect(_number(value) and value >= 0, f"parity {key} {value!r} is not a finite number >= 0")
    for key in ("opset", "capture", "versions", "timings"):
        _expect(isinstance(m.get(key, {}), dict), f"{key!r} is not an object")
    for key in ("optimizations", "notes"):
        _expect(isinstance(m.get(key, []), list), f"{key!r} is not a list")
    _expect(all(isinstance(n, str) for n in m.get("notes", [])), "'notes' holds something other than text")
    for entry in m.get("optimizations", []):
        _check_optimization(entry)
    if "generation" in m:
        _check_generation(m["generation"])


_LAYOUT_INTS = ("layers", "kv_heads", "head_dim", "vocab_size", "max_context")


def _check_generation(gen: Any) -> None:
    """What the decode loop reads: the cache geometry and the special token ids, all small integers."""
    tasks = ("text-generation", "text2text-generation", "automatic-speech-recognition")
    _expect(isinstance(gen, dict) and gen.get("task") in tasks, "'generation' is no text-generation entry")
    layout = gen.get("layout")
    _expect(isinstance(layout, dict), "'generation' has no 'layout' object")
    for key in _LAYOUT_INTS:
        _expect(_int(layout.get(key)) and 1 <= layout[key] <= MAX_DIM, f"generation layout {key!r} is not a size")
    window = layout.get("sliding_window")
    _expect(window is None or (_int(window) and window >= 1), "generation 'sliding_window' is not a size")
    _expect(isinstance(layout.get("position_ids", False), bool), "generation 'position_ids' is not true/false")
    _expect(layout.get("kv_dtype", "float32") in DTYPES, "generation 'kv_dtype' is not a known dtype")
    vocab = layout["vocab_size"]
    ids = gen.get("eos_token_ids", [])
    _expect(
        isinstance(ids, list) and all(_int(i) and 0 <= i < vocab for i in ids),
        "generation 'eos_token_ids' is not a list of token ids",
    )
    for key in ("pad_token_id", "bos_token_id"):
        value = gen.get(key)
        _expect(value is None or (_int(value) and 0 <= value < vocab), f"generation {key!r} is not a token id")
    for key in ("tokenizer", "chat_template"):
        _expect(isinstance(gen.get(key, False), bool), f"generation {key!r} is not true/false")
    if gen["task"] != "text-generation":  # an encoder-decoder: where its decoder starts, which ids it forces
        prompt = gen.get("decoder_prompt")
        _expect(
            isinstance(prompt, list)
            and 0 < len(prompt) < layout["max_context"]
            and all(_int(i) and 0 <= i < vocab for i in prompt),
            "generation 'decoder_prompt' is not a list of token ids",
        )
        detect = gen.get("detect_language")
        _expect(
            detect is None
            or (
                isinstance(detect, dict)
                and _int(detect.get("at"))
                and 1 <= detect["at"] <= len(prompt)
                and isinstance(detect.get("ids"), list)
                and bool(detect["ids"])
                and all(_int(i) and 0 <= i < vocab for i in detect["ids"])
            ),
            "generation 'detect_language' is not a position and token ids",
        )
        forcing = gen.get("forcing")
        _expect(isinstance(forcing, dict), "generation 'forcing' is not an object")
        for key, value in forcing.items():
            if key == "min_eos_step":
                _expect(_int(value) and 0 <= value <= MAX_DIM, "generation forcing 'min_eos_step' is not a count")
                continue
            ids = value if isinstance(value, list) else [value]
            _expect(
                key in ("suppress", "begin_suppress", "forced_bos", "forced_eos", "eos")
                and all(v is None or (_int(v) and 0 <= v < vocab) for v in ids),
                f"generation forcing {key!r} is not token ids",
            )


def _check_optimization(entry: Any) -> None:
    _expect(isinstance(entry, dict), "an 'optimizations' entry is not an object")
    backend = entry.get("backend")
    _expect(
        backend is None or (isinstance(backend, str) and bool(_BACKEND.match(backend))),
        f"optimization backend {backend!r} is not a backend name",
    )
    _expect(isinstance(entry.get("budget", ""), str), "optimization 'budget' is not text")
    held = entry.get("held_out_file")
    _expect(held is None or (isinstance(held, str) and plain_name(held)), f"held-out file {held!r} is not a plain name")
    threads = entry.get("threads")
    _expect(threads is None or (_int(threads) and 1 <= threads <= 4096), f"optimization threads {threads!r}")


def _check_source(source: Any) -> None:
    _expect(isinstance(source, dict), "'source' is not an object")
    for key in ("model", "kind", "sha256"):
        _expect(source.get(key) is None or isinstance(source[key], str), f"source {key!r} is not a string")
    digest = source.get("sha256")
    _expect(digest is None or bool(_SHA256.match(digest)), "source 'sha256' is not a sha256 hex digest")


def _check_inputs(inputs: Any) -> None:
    _expect(isinstance(inputs, list) and inputs, "'inputs' is not a non-empty list")
    names: set[str] = set()
    symbols: dict[str, tuple[int, int, int]] = {}
    for item in inputs:
        _expect(isinstance(item, dict), "an input is not an object")
        name = item.get("name")
        _expect(isinstance(name, str) and bool(_TENSOR.match(name)), f"input name {name!r} is not a tensor name")
        _expect(name not in names, f"input {name!r} is listed twice")
        names.add(name)
        dtype = item.get("dtype")
        _expect(isinstance(dtype, str) and dtype in DTYPES, f"input {name!r} has unknown dtype {dtype!r}")
        _expect(item.get("role", "data") in ("data", "control"), f"input {name!r} has unknown role")
        dims = item.get("dims")
        _expect(isinstance(dims, list), f"input {name!r} has no 'dims' list")
        for dim in dims:
            if isinstance(dim, dict):
                _check_symbol(name, dim, symbols)
            else:
                _expect(
                    _int(dim) and 1 <= dim <= MAX_DIM, f"input {name!r} has dimension {dim!r} (need 1 to {MAX_DIM})"
                )
        rng = item.get("range")
        if rng is not None:
            _expect(
                isinstance(rng, list) and len(rng) == 2 and all(_number(v) for v in rng) and rng[0] < rng[1],
                f"input {name!r} has range {rng!r} (need [LOW, HIGH] with LOW < HIGH)",
            )
            problem = range_problem(item["dtype"], *rng) if item["dtype"] != "bool" else "on a bool input"
            _expect(problem is None, f"input {name!r} has range {rng!r}: {problem}")


def _check_symbol(input_name: str, dim: dict[str, Any], symbols: dict[str, tuple[int, int, int]]) -> None:
    sym = dim.get("name")
    _expect(isinstance(sym, str) and bool(_IDENT.match(sym)), f"input {input_name!r} has a symbol without a name")
    bounds = (dim.get("min"), dim.get("opt"), dim.get("max"))
    _expect(
        all(_int(v) for v in bounds) and 0 <= bounds[0] <= bounds[1] <= bounds[2] <= MAX_DIM,  # type: ignore[operator]
        f"symbol {sym!r} has bounds min {bounds[0]!r}, opt {bounds[1]!r}, max {bounds[2]!r} "
        "(need integers with 0 <= min <= opt <= max)",
    )
    _expect(symbols.setdefault(sym, bounds) == bounds, f"symbol {sym!r} has different bounds in two inputs")  # type: ignore[arg-type]


def _check_outputs(outputs: Any) -> None:
    _expect(isinstance(outputs, list), "'outputs' is not a list")
    for item in outputs:
        _expect(isinstance(item, dict) and isinstance(item.get("name"), str), "an output has no name")
        _expect(isinstance(item.get("dtype", ""), str), f"output {item['name']!r} has a malformed dtype")
        dims = item.get("dims", [])
        _expect(
            isinstance(dims, list) and all(d is None or isinstance(d, str) or _int(d) for d in dims),
            f"output {item['name']!r} has malformed dims",
        )


def _check_files(files: Any, model_file: str, manifest_file: str) -> None:
    _expect(isinstance(files, dict), "'files' (the sha256 of every file) is missing")
    _expect(model_file in files, f"{model_file} is not listed in 'files' with its sha256")
    for name, info in files.items():
        _expect(plain_name(name) and name != manifest_file, f"file name {name!r} is not a plain name in the bundle")
        _expect(isinstance(info, dict), f"file {name!r} has no sha256")
        digest = info.get("sha256")
        _expect(isinstance(digest, str) and bool(_SHA256.match(digest)), f"file {name!r} has no valid sha256")
        _expect(_int(info.get("bytes", 0)) and info.get("bytes", 0) >= 0, f"file {name!r} has a malformed size")


def _expect(ok: bool, why: str) -> None:
    if not ok:
        raise _Bad(why)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
