"""Property-based tests: the spec parser and the manifest reader take any text and either accept it or
raise the one error class a user sees as a one-line message; nothing else escapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.bundle import Bundle
from modelport.errors import BundleError, UsageError
from modelport.spec import DTYPES, Signature, parse_dim, parse_input

SPEC_ALPHABET = st.sampled_from(list("abxyz_019:,.-@=+e ") + ["inf", "nan", "float32", "int64", "bool", "..", "0"])


@given(st.lists(SPEC_ALPHABET, max_size=20).map("".join))
def test_parse_input_accepts_or_says_why(text):
    try:
        spec = parse_input(text)
    except UsageError as exc:
        assert str(exc).startswith("bad --input") and "\n" not in str(exc)
        return
    assert spec.dtype in DTYPES
    assert all(isinstance(d, str) or d >= 1 for d in spec.dims)
    assert parse_input(str(spec)) == spec  # what we print reads back as the same spec


@given(st.lists(SPEC_ALPHABET, max_size=16).map("".join))
def test_parse_dim_accepts_or_says_why(text):
    try:
        dim = parse_dim(text)
    except UsageError as exc:
        assert str(exc).startswith("bad --dim")
        return
    assert 1 <= dim.min < dim.max and (dim.opt is None or dim.min <= dim.opt <= dim.max)


@given(
    st.lists(st.sampled_from(["batch", "seq", "h", 1, 3, 8]), min_size=1, max_size=4),
    st.integers(1, 64),
    st.integers(0, 64),
)
def test_signature_json_round_trips(dims, low, span):
    spec = parse_input(f"x:{','.join(map(str, dims))}")
    symbols = sorted({d for d in dims if isinstance(d, str)})
    sig = Signature.build([spec], [parse_dim(f"{s}={low}..{low + span + 1}") for s in symbols])
    again = Signature.from_json(json.loads(json.dumps(sig.to_json())))
    assert again.inputs == sig.inputs and again.dims == sig.dims


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory) -> Path:
    from modelport.exporting import export
    from tests.conftest import zoo_specs

    out = tmp_path_factory.mktemp("prop") / "b"
    export("tests.models.zoo:multi_output", out, *zoo_specs("multi_output"))
    return out


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_manifest_reader_refuses_or_opens_any_mutation(good_bundle, tmp_path_factory, data):
    manifest = json.loads((good_bundle / "modelport.json").read_text())
    paths = [p for p in _paths(manifest) if p]
    path = data.draw(st.sampled_from(paths))
    replacement = data.draw(JSON)
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = replacement
    folder = tmp_path_factory.mktemp("mut") / "b"
    shutil.copytree(good_bundle, folder)
    (folder / "modelport.json").write_text(json.dumps(manifest))
    try:
        bundle = Bundle.open(folder)
    except BundleError as exc:
        assert "\n" not in str(exc)
        return
    assert bundle.signature.inputs  # a manifest that opens can be used: its signature reads without error
    assert bundle.model_path.is_file()
