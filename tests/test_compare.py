import numpy as np

from modelport.compare import compare, cosine


def test_within_tolerance_passes_and_reports_diffs():
    exp = np.array([1.0, 2.0, 3.0], np.float32)
    d = compare("y", exp, exp + np.float32(5e-5), atol=1e-4, rtol=1e-3)
    assert d.passed and 4e-5 < d.max_abs < 6e-5


def test_outside_tolerance_fails_and_says_where():
    exp = np.zeros((2, 3), np.float32)
    act = exp.copy()
    act[1, 2] = 0.5
    d = compare("y", exp, act, atol=1e-4, rtol=1e-3)
    assert not d.passed and d.max_abs == 0.5
    assert "[1, 2]" in d.why and "exceeds atol" in d.why


def test_shape_and_dtype_mismatch_fail():
    assert "shape (3,) instead of (2,)" in compare("y", np.zeros(2), np.zeros(3), 1e-4, 1e-3).why
    assert "dtype" in compare("y", np.zeros(2, np.float32), np.zeros(2, np.float64), 1e-4, 1e-3).why


def test_nan_matches_only_nan():
    exp = np.array([np.nan, 1.0], np.float32)
    assert compare("y", exp, exp.copy(), 1e-4, 1e-3).passed
    bad = compare("y", exp, np.array([0.0, 1.0], np.float32), 1e-4, 1e-3)
    assert not bad.passed and "NaN" in bad.why


def test_integers_compare_exactly():
    assert not compare("i", np.array([1, 2]), np.array([1, 3]), 10, 10).passed


def test_cosine():
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == 1.0
    assert abs(cosine(np.array([1.0, 0.0]), np.array([0.0, 1.0]))) < 1e-12


def test_records_the_tolerance_applied_and_the_outputs_scale():
    d = compare(
        "y", np.array([-300.0, 2.0, np.inf], np.float32), np.array([-300.0, 2.0, np.inf], np.float32), 0.03, 1e-3
    )
    assert d.passed and (d.atol, d.rtol, d.scale) == (0.03, 1e-3, 300.0)
    assert d.to_json()["atol"] == 0.03
    exact = compare("i", np.array([1, 5]), np.array([1, 5]), 1e-4, 1e-3)
    assert (exact.atol, exact.rtol, exact.scale) == (0.0, 0.0, 5.0)  # integers are held to equality
