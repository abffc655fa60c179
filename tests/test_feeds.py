import numpy as np
import pytest

from modelport.feeds import make_feeds, size_sets
from modelport.spec import DTYPES, Signature, parse_dim, parse_input


def sig(*inputs, dims=()):
    return Signature.build([parse_input(i) for i in inputs], [parse_dim(d) for d in dims])


def test_every_symbol_at_min_max_and_an_odd_middle_never_only_the_example():
    s = sig("x:batch,seq", dims=["batch=1..8@2", "seq=4..20@6"])
    sets = dict(size_sets(s))
    values = list(sets.values())
    assert {"batch": 1, "seq": 4} in values and {"batch": 8, "seq": 20} in values
    mids = [v for k, v in sets.items() if k.startswith("mid")]
    assert mids and all(v % 2 == 1 for v in mids[0].values())
    assert s.example_sizes() not in values or len(values) > 1
    # opposite ends, so two inputs' dims cannot be swapped unnoticed
    assert {"batch": 8, "seq": 4} in values and {"batch": 1, "seq": 20} in values


def test_integers_stay_in_declared_range():
    for feed in make_feeds(sig("ids:batch,seq:int64:5..9", dims=["batch=1..4", "seq=1..30"])):
        ids = feed.arrays["ids"]
        assert ids.dtype == np.int64 and ids.min() >= 5 and ids.max() < 9


def test_both_values_of_a_bool_input_are_fed():
    feeds = make_feeds(sig("x:batch,3", "flag::bool"))
    values = {bool(f.arrays["flag"]) for f in feeds}
    assert values == {True, False}
    assert all(f.arrays["flag"].shape == () for f in feeds)


def test_attention_mask_is_padding_with_at_least_one_token():
    feeds = make_feeds(
        sig("ids:batch,seq:int64:0..100", "attention_mask:batch,seq:int64:0..2", dims=["batch=2..6", "seq=3..40"])
    )
    padded = False
    for feed in feeds:
        mask = feed.arrays["attention_mask"]
        assert mask[:, 0].all()
        assert (np.diff(mask, axis=1) <= 0).all()  # ones, then zeros
        padded |= bool((mask == 0).any())
    assert padded


def test_feeds_are_reproducible():
    a = make_feeds(sig("x:batch,3"), seed=3)
    b = make_feeds(sig("x:batch,3"), seed=3)
    assert all(np.array_equal(x.arrays["x"], y.arrays["x"]) for x, y in zip(a, b, strict=True))


def test_integer_control_inputs_are_fed_at_their_min_and_max():
    feeds = make_feeds(sig("x:batch,3", "n::int64:0..5"))
    assert {int(f.arrays["n"]) for f in feeds} == {0, 4}


def test_float_data_is_also_fed_negated_and_scaled_up():
    feeds = make_feeds(sig("x:batch,3", dims=["batch=1..8"]))
    labels = [f.label for f in feeds]
    base = next(f for f in feeds if f.label.startswith("mid") and f.label.count(" ") == 1)
    negated = next(f for f in feeds if f.label.endswith("negated"))
    scaled = next(f for f in feeds if f.label.endswith("x100"))
    np.testing.assert_array_equal(negated.arrays["x"], -base.arrays["x"])
    np.testing.assert_allclose(scaled.arrays["x"], base.arrays["x"] * 100, rtol=1e-6)
    assert len(labels) == len(set(labels))


def test_a_declared_float_range_is_never_left_and_its_ends_are_fed():
    feeds = make_feeds(sig("x:batch,4:float32:0.1..1.0", dims=["batch=1..8"]))
    for feed in feeds:
        x = feed.arrays["x"]
        assert x.dtype == np.float32 and x.min() >= np.float32(0.1) and x.max() <= np.float32(1.0), feed.label
        assert feed.stress == ""
    labels = [f.label for f in feeds]
    assert not [lb for lb in labels if lb.endswith(("negated", "x100"))]
    low = next(f for f in feeds if f.label.endswith("at low"))
    high = next(f for f in feeds if f.label.endswith("at high"))
    assert (low.arrays["x"] == np.float32(0.1)).all() and (high.arrays["x"] == np.float32(1.0)).all()


def test_only_unranged_floats_are_negated_and_scaled():
    feeds = make_feeds(sig("x:batch,3", "t::float32:0.5..2"))
    base = next(f for f in feeds if f.label == "mid batch=17")
    for stress, factor in (("negated", -1), ("x100", 100)):
        feed = next(f for f in feeds if f.stress == stress)
        np.testing.assert_allclose(feed.arrays["x"], base.arrays["x"] * factor, rtol=1e-6)
        assert feed.arrays["t"] == base.arrays["t"]  # the temperature stays in 0.5..2
    assert all(0.5 <= float(f.arrays["t"]) <= 2 for f in feeds)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_scalars_of_every_dtype_are_0d_arrays_in_every_feed(dtype):
    spec = f"s::{dtype}" + ("" if dtype == "bool" else ":1..3")
    feeds = make_feeds(sig("x:batch,3", spec))
    for feed in feeds:
        value = feed.arrays["s"]
        assert type(value) is np.ndarray and value.shape == () and value.dtype == np.dtype(dtype), feed.label
        assert type(feed.arrays["x"]) is np.ndarray


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_float_data_comes_in_its_dtype(dtype):
    for feed in make_feeds(sig(f"x:batch,3:{dtype}", f"y:batch:{dtype}:-2..2")):
        assert feed.arrays["x"].dtype == feed.arrays["y"].dtype == np.dtype(dtype)
        assert -2 <= feed.arrays["y"].min() and feed.arrays["y"].max() <= 2


@pytest.mark.parametrize(("name", "true_is_padding"), [("key_padding_mask", True), ("attention_mask", False)])
def test_bool_mask_rows_never_pad_everything_under_either_convention(name, true_is_padding):
    feeds = make_feeds(sig("x:batch,seq,4", f"{name}:batch,seq:bool", dims=["batch=2..6", "seq=1..40"]))
    assert not [f for f in feeds if "control=" in f.label]  # a mask is data, not a control flag
    for feed in feeds:
        mask = feed.arrays[name]
        keep = ~mask if true_is_padding else mask
        assert mask.dtype == np.bool_ and keep[:, 0].all()  # valid positions first, under the name's reading
        assert (np.diff(keep.astype(int), axis=1) <= 0).all()  # then padding
        if mask.shape[1] > 1:  # a True and a False in every row: either reading keeps a position
            assert mask.any(axis=1).all() and (~mask).any(axis=1).all(), feed.label
        else:
            assert keep.all()
