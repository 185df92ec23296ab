"""Paired verdicts: is the gap between two configurations real, how sure is it, and how big a gap could this design
detect at all? Every configuration of a sweep answers the same held-out questions, with one or more seeds, so a
comparison has two sources of noise, and a verdict has to carry both:
- the seed: two seeds of one configuration differ (by up to 0.16 answer accuracy on the tiny model). A test over
  questions alone would call that a difference: on two seeds of one configuration it is "significant" far more
  often than 5% of the time (docs/verdicts.md has the measured rate).
- the questions: another set of held-out questions would rank the arms a little differently.

The difference is the metric's mean over one arm's seeds and the shared questions minus the other's.
- Its 95% interval: a two-level bootstrap, seeds resampled within each arm, then questions resampled together for
  both arms (the pairing); the runs' deviations from their arm's mean are scaled by sqrt(S / (S - 1)) first, the
  usual small-sample correction, without which 2 or 3 resampled seeds would understate the seed spread.
- Its p-value: a paired t-test whose standard error adds the two components (runs crossed with questions, a random
  effect each): var(run means) / S per arm (which holds the seed spread and each run's own question-level noise),
  plus var(per-question differences) / Q with that noise taken out. Welch-Satterthwaite degrees of freedom, so 2 or
  3 seeds give the wide t tails they should.
  Why not the two tests the field reaches for: an exact McNemar per seed (combined) counts only question noise, so it
  calls seeds of one configuration different; a permutation of runs between arms is exact, but 3 seeds per arm
  allow 20 relabellings, and no p below 0.1.
- Holm's correction over every comparison of one report.
- The minimal detectable effect: the gap this design finds 80% of the time at alpha 0.05, (t_0.975 + t_0.80) * SE,
  and the seeds per arm that would halve it (none, when the questions are what limits it).
An arm with one seed has no spread of its own: it borrows the largest seed variance among the report's configurations
that have two or more. With no such configuration the seed spread is unmeasured, and the verdict says so instead of
claiming a difference that two seeds of one configuration would also show."""

import math

import numpy as np
from scipy import stats

ALPHA, POWER = 0.05, 0.80
RESAMPLES = 4000  # ends vary by sd 0.003 accuracy across bootstrap seeds (fair ablation, lora vs full); seed 0 here


def seed_variance(values: np.ndarray) -> tuple[float, int] | None:
    """(variance of the run means, its degrees of freedom); None with one run."""
    if values.shape[0] < 2:
        return None
    return float(values.mean(axis=1).var(ddof=1)), values.shape[0] - 1


def borrowed_seed_variance(arms: list) -> tuple[float, int] | None:
    """What an arm with one run assumes for its seed variance: the largest of the arms with two or more runs. Not
    their pooled mean: spreads differ (an arm stuck at accuracy 0 has none), and the mean would understate it."""
    return max((p for p in map(seed_variance, arms) if p is not None), default=None)


def interaction_noise(values: np.ndarray) -> float:
    """Each run's own question-level noise: the residual mean square of runs x questions (run and question effects
    removed). 0 with one run or one question, where it cannot be told apart."""
    runs, questions = values.shape
    if runs < 2 or questions < 2:
        return 0.0
    residual = values - values.mean(axis=1, keepdims=True) - values.mean(axis=0, keepdims=True) + values.mean()
    return float((residual**2).sum() / ((runs - 1) * (questions - 1)))


def compare(a: np.ndarray, b: np.ndarray, borrowed: tuple | None = None, seed: int = 0, details: bool = True) -> dict:
    """a vs b: runs x questions arrays over the same questions in the same order (one column: run-level numbers
    only); borrowed: (variance, df) for an arm with one run. Returns the difference a - b, p, the standard error,
    degrees of freedom and minimal detectable effect; with details, also the bootstrap interval and the seeds per arm
    that would halve the detectable gap. p is None when the seed spread is unmeasured (one run, nothing borrowed)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    questions = a.shape[1]
    diff = float(a.mean() - b.mean())
    out = {"diff": diff, "seeds": [a.shape[0], b.shape[0]], "questions": questions}
    if details:
        out["ci"] = bootstrap_interval(a, b, seed)
    per_seed = [seed_variance(x) or borrowed for x in (a, b)]
    if None in per_seed:
        return out | {"p": None, "se": None, "df": None, "mde": None, "seeds_to_halve": None}
    # (variance, df) of each part of var(diff): each arm's seeds, then the questions (paired differences).
    parts = [(v / x.shape[0], df) for (v, df), x in zip(per_seed, (a, b))]
    question_part = 0.0
    if questions >= 2:
        noise = sum(interaction_noise(x) / x.shape[0] for x in (a, b))
        question_part = max(0.0, float((a.mean(axis=0) - b.mean(axis=0)).var(ddof=1)) - noise) / questions
        parts.append((question_part, questions - 1))
    var = sum(v for v, _ in parts)
    if var <= 0:  # no variation anywhere: the arms are the same, or differ everywhere alike
        return out | {"p": 1.0 if diff == 0 else 0.0, "se": 0.0, "df": math.inf, "mde": 0.0, "seeds_to_halve": None}
    df = satterthwaite(parts)
    p = float(2 * stats.t.sf(abs(diff) / math.sqrt(var), df))
    mde = detectable(var, df)
    # Seeds per arm that would halve the detectable gap: the seed parts shrink, and the t quantiles with them (at 2
    # seeds, most of the gap is the t tail of 1 degree of freedom); the questions' part stays.
    per_seed_var = [v for v, _ in per_seed]
    more = range(max(a.shape[0], b.shape[0]) + 1, MAX_SEEDS + 1) if details else ()
    halve = next((n for n in more if detectable(*at_seeds(per_seed_var, n, question_part, questions)) <= mde / 2), None)
    return out | {"p": p, "se": math.sqrt(var), "df": df, "mde": mde, "seeds_to_halve": halve}


MAX_SEEDS = 200  # beyond this the questions, not the seeds, limit the design: "more seeds alone cannot halve it"


def satterthwaite(parts: list) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates (variance, df)."""
    total = sum(v for v, _ in parts)
    return float(total**2 / sum(v**2 / d for v, d in parts if v > 0))


def detectable(var: float, df: float) -> float:
    """The gap found with 80% power by a two-sided test at alpha 0.05, given the difference's variance."""
    return float((stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df)) * math.sqrt(var))


def at_seeds(per_seed_var: list, seeds: int, question_part: float, questions: int) -> tuple[float, float]:
    """(variance, df) of the difference with this many seeds per arm and the same questions."""
    parts = [(v / seeds, seeds - 1) for v in per_seed_var]
    if questions >= 2:
        parts.append((question_part, questions - 1))
    return sum(v for v, _ in parts), satterthwaite(parts)


def bootstrap_interval(a: np.ndarray, b: np.ndarray, seed: int = 0) -> list[float]:
    """95% percentile interval of mean(a) - mean(b): seeds resampled within each arm (deviations scaled up by
    sqrt(S / (S - 1))), then the questions, with the same draw for both arms (they answered the same questions)."""
    rng = np.random.default_rng(seed)
    questions = a.shape[1]
    weights = rng.multinomial(questions, np.full(questions, 1 / questions), size=RESAMPLES) / questions
    means = []
    for x in (a, b):
        runs = x.shape[0]
        if runs > 1:
            centre = x.mean(axis=0, keepdims=True)
            x = centre + (x - centre) * math.sqrt(runs / (runs - 1))
        seed_weights = rng.multinomial(runs, np.full(runs, 1 / runs), size=RESAMPLES) / runs
        means.append(np.einsum("br,rq,bq->b", seed_weights, x, weights))
    low, high = np.percentile(means[0] - means[1], [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return [float(low), float(high)]


def holm(p_values: list) -> list:
    """Holm's step-down adjustment (None stays None): controls the chance of any false 'better' in one report.
    Written here because scipy has only Benjamini-Hochberg/Yekutieli (false discovery rate, a weaker promise)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted, running = list(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted
