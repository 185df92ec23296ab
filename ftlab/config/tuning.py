"""The learning rate of a fair-ablation run (sweep=fair_ablation, ftlab/report/fair.py): in the tuning stage, trial t
of tune.trials log-spaced over the strategy's lr_range; in the confirmation stage, the rate chosen for its arm."""


def lr_grid(low: float, high: float, trials: int) -> list[float]:
    """trials rates from low to high, evenly spaced on a log scale (both ends included)."""
    if trials < 2 or not 0 < low < high:
        raise ValueError(f"expected 0 < low < high and at least 2 trials, got [{low}, {high}] and {trials}")
    return [low * (high / low) ** (i / (trials - 1)) for i in range(trials)]


def tuned_lr(lr_range, tune, validation_split: float) -> float:
    """The ${tuned_lr:${strategy.lr_range},${tune},${data.validation_split}} resolver of the fair-ablation preset."""
    if not validation_split:  # checked here, before a run trains: stage 1 has nothing else to choose by
        raise ValueError("data.validation_split: a fair ablation chooses on a validation split: expected > 0, got 0")
    if tune.chosen:
        if tune.arm not in tune.chosen:
            raise ValueError(
                f"tune.chosen: no learning rate for arm {tune.arm!r}: none of its tuning trials finished (chosen: "
                f"{', '.join(tune.chosen)})"
            )
        return float(tune.chosen[tune.arm])
    if tune.trial is None:
        raise ValueError("tune.trial: the tuning stage needs a trial number (0 .. tune.trials - 1), or tune.chosen")
    if not 0 <= tune.trial < tune.trials:
        raise ValueError(f"tune.trial: expected 0 .. {tune.trials - 1} (tune.trials={tune.trials}), got {tune.trial}")
    try:
        return lr_grid(*map(float, lr_range), tune.trials)[tune.trial]
    except (TypeError, ValueError) as err:
        raise ValueError(f"strategy.lr_range: expected [low, high] with 0 < low < high: {err}") from None
