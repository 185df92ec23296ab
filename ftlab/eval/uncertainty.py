"""How sure one run's held-out numbers are: 95% intervals over the questions it was judged on (issue: a claim that one
configuration beats another comes with its uncertainty). Answer accuracy gets Wilson's interval (sound for a share
near 0 or 1, where the normal approximation leaves [0, 1]); the held-out loss, a token-weighted mean, a percentile
bootstrap that resamples whole questions (its tokens are not independent of each other)."""

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 2000  # percentile bootstrap: the interval's ends move by about 0.1% of the loss between seeds of it


def accuracy_interval(correct: list) -> list[float]:
    """Wilson's 95% interval for the share of questions answered correctly."""
    ci = stats.binomtest(int(sum(correct)), len(correct)).proportion_ci(LEVEL, method="wilson")
    return [float(ci.low), float(ci.high)]


def loss_interval(loss_sums: list, tokens: list, seed: int = 0) -> list[float]:
    """95% interval for the mean token loss (sum of losses over sum of tokens), resampling questions."""
    if len(tokens) < 2:
        return [float("nan"), float("nan")]
    result = stats.bootstrap(
        (np.asarray(loss_sums, float), np.asarray(tokens, float)),
        lambda sums, counts, axis=-1: sums.sum(axis) / counts.sum(axis),
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=RESAMPLES,
        confidence_level=LEVEL,
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]
