"""The 95% intervals of one run's held-out numbers (ftlab/eval/uncertainty.py): right where a formula exists, and
narrower with more questions."""

import math

import numpy as np
import pytest

from ftlab.eval.uncertainty import accuracy_interval, loss_interval


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple:
    """Wilson's score interval written out, to check scipy's against."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(0, 90), (69, 90), (90, 90), (3, 10)])
def test_accuracy_interval_is_wilsons(k, n):
    low, high = accuracy_interval([True] * k + [False] * (n - k))
    assert (low, high) == pytest.approx(wilson(k, n), abs=1e-9)
    assert 0 <= low <= k / n <= high <= 1


def test_intervals_narrow_as_the_questions_grow():
    """The same share (and the same losses) on four times the questions: about half the width (1/sqrt(4))."""
    small = accuracy_interval([True] * 30 + [False] * 15)
    large = accuracy_interval([True] * 120 + [False] * 60)
    assert (large[1] - large[0]) / (small[1] - small[0]) == pytest.approx(0.5, abs=0.05)
    rng = np.random.default_rng(1)
    sums, tokens = rng.gamma(2.0, 5.0, 45), rng.integers(8, 40, 45).astype(float)
    narrow = loss_interval(np.tile(sums, 4), np.tile(tokens, 4))
    wide = loss_interval(sums, tokens)
    assert wide[0] <= sums.sum() / tokens.sum() <= wide[1]
    assert (narrow[1] - narrow[0]) / (wide[1] - wide[0]) == pytest.approx(0.5, abs=0.1)
