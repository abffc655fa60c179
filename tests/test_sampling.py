"""The logits processors of generation, each against transformers' own, and the decode loop's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import UsageError
from modelport.generation.loop import batch_feed
from modelport.generation.sampling import Decoding, next_tokens, repetition_penalty, top_k, top_p

RNG = np.random.default_rng(0)
SCORES = RNG.normal(size=(3, 50)).astype(np.float32) * 3


@pytest.mark.hf
def test_processors_match_transformers():
    torch = pytest.importorskip("torch")
    gen = pytest.importorskip("transformers.generation.logits_process")
    history = [[1, 2, 2, 7], [3], [49, 0]]
    ids = torch.tensor([h + [h[-1]] * (4 - len(h)) for h in history])  # padding repeats a seen token
    theirs = gen.RepetitionPenaltyLogitsProcessor(1.3)(ids, torch.from_numpy(SCORES.copy())).numpy()
    np.testing.assert_allclose(repetition_penalty(SCORES, history, 1.3), theirs, rtol=1e-6)
    theirs = gen.TopKLogitsWarper(5)(ids, torch.from_numpy(SCORES.copy())).numpy()
    assert np.array_equal(np.isinf(top_k(SCORES, 5)), np.isinf(theirs))
    for p in (0.3, 0.9):
        theirs = gen.TopPLogitsWarper(p)(ids, torch.from_numpy(SCORES.copy())).numpy()
        assert np.array_equal(np.isinf(top_p(SCORES, p)), np.isinf(theirs)), p


def test_greedy_sampling_and_seeds():
    greedy = next_tokens(SCORES, [[]] * 3, Decoding(), np.random.default_rng(0))
    assert greedy.tolist() == SCORES.argmax(-1).tolist()
    sample = Decoding(temperature=1.0, top_k=3, seed=5)
    draws = [next_tokens(SCORES, [[]] * 3, sample, np.random.default_rng(5)).tolist() for _ in range(2)]
    assert draws[0] == draws[1]
    top3 = np.argsort(-SCORES, axis=-1)[:, :3]
    assert all(t in row for t, row in zip(draws[0], top3, strict=True))
    many = [next_tokens(SCORES[:1], [[]], Decoding(temperature=5.0), np.random.default_rng(s))[0] for s in range(40)]
    assert len(set(many)) > 5  # a high temperature spreads the choice


def test_bad_options_say_which_and_what_is_allowed():
    with pytest.raises(UsageError, match=r"top_p 1.5 is not a number in \(0, 1\]"):
        Decoding(top_p=1.5)
    with pytest.raises(UsageError, match="max_new_tokens 0 is not an integer >= 1"):
        Decoding(max_new_tokens=0)
    with pytest.raises(UsageError, match="repetition_penalty"):
        Decoding(repetition_penalty=float("nan"))


def test_left_padded_batch_counts_positions_per_row():
    feed = batch_feed([[5, 6, 7], [9]], pad_id=1, position_ids=True)
    assert feed["input_ids"].tolist() == [[5, 6, 7], [1, 1, 9]]
    assert feed["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert feed["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
