import pytest

from modelport.errors import UsageError
from modelport.spec import Dim, InputSpec, Signature, parse_dim, parse_input


def test_full_spec_parses_dims_dtype_and_half_open_range():
    spec = parse_input("input_ids:batch,seq:int64:0..30522")
    assert spec == InputSpec("input_ids", ("batch", "seq"), "int64", 0, 30522)
    assert spec.symbols == ["batch", "seq"]
    assert spec.role == "data"


def test_defaults_and_aliases():
    assert parse_input("x:batch,3,h,w").dtype == "float32"
    assert parse_input("x:2:fp16").dtype == "float16"
    assert parse_input("n::long").dims == ()


def test_scalar_bool_is_a_control_input():
    spec = parse_input("flag::bool")
    assert spec.dims == () and spec.dtype == "bool" and spec.role == "control"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x", "expected 2 to 4"),
        ("x:batch:float99", "unknown dtype 'float99'"),
        ("x:batch,3-4", "neither a size nor a symbol"),
        ("x:batch:int64:5..1", "is empty"),
        ("x:batch:int64:a..b", "not LOW..HIGH"),
        ("flag::bool:0..2", "takes no value range"),
        ("1x:batch", "not an identifier"),
        ("x:,:float32", "empty dimension"),
        ("x:batch,,8", "empty dimension"),
        ("x:0,8", "every size must be at least 1"),
        ("x:4:float32:0..inf", "must be finite"),
        ("x:4:int8:0..300", "does not fit int8"),
    ],
)
def test_bad_input_spec_names_the_problem_and_the_form(text, why):
    with pytest.raises(UsageError, match=why) as info:
        parse_input(text)
    assert "NAME:DIMS[:DTYPE[:LOW..HIGH]]" in info.value.hint
    assert "\n" not in info.value.one_line()


def test_dim_parses_bounds_and_opt():
    assert parse_dim("batch=1..32@8") == Dim("batch", 1, 32, 8)
    assert parse_dim("seq=4..128") == Dim("seq", 4, 128, None)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("batch", "expected NAME=MIN..MAX"),
        ("b=5..5", "need 1 <= MIN < MAX"),
        ("b=0..4", "need 1 <= MIN < MAX"),
        ("b=1..4@9", "outside 1..4"),
    ],
)
def test_bad_dim(text, why):
    with pytest.raises(UsageError, match=why):
        parse_dim(text)


def test_symbol_shared_by_two_inputs_is_one_dimension():
    sig = Signature.build([parse_input("a:batch,seq:int64"), parse_input("b:batch,seq:int64")], [parse_dim("seq=2..9")])
    assert list(sig.dims) == ["batch", "seq"]
    assert sig.dims["seq"].max == 9
    sizes = sig.example_sizes()
    assert sig.shape(sig.inputs[0], sizes) == sig.shape(sig.inputs[1], sizes)


def test_example_sizes_avoid_0_1_and_collisions():
    sig = Signature.build([parse_input("x:a,b,c")], [])
    sizes = list(sig.example_sizes().values())
    assert min(sizes) >= 2 and len(set(sizes)) == 3


def test_dim_for_unknown_symbol_is_refused():
    with pytest.raises(UsageError, match="--dim seq names no symbol"):
        Signature.build([parse_input("x:batch,4")], [parse_dim("seq=1..4")])


def test_duplicate_input_refused():
    with pytest.raises(UsageError, match="declared twice"):
        Signature.build([parse_input("x:2"), parse_input("x:3")])


def test_signature_round_trips_through_json():
    sig = Signature.build(
        [parse_input("ids:batch,seq:int64:0..100"), parse_input("f::bool")], [parse_dim("batch=1..4@3")]
    )
    again = Signature.from_json(sig.to_json())
    assert again.inputs == sig.inputs and again.dims == sig.dims
