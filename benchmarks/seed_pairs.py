"""Real seeds of one configuration compared as if they were two arms: how often the report's paired verdict, and an
exact McNemar test over the questions alone, call them different at p < 0.05. Both arms are the same configuration,
so every "different" is a false positive. The verdict's calibration on thousands of simulated sweeps is in
tests/test_verdicts.py; this is the same question asked of real runs.

    python benchmarks/seed_pairs.py outputs/sweeps/<time>/confirm [--metric eval.answer_accuracy] [--out FILE]

Each one-seed "arm" assumes the largest seed spread of the sweep's configurations, as the report does."""

import argparse
import itertools
import json
from pathlib import Path

from scipy import stats

from ftlab.report.collect import collect_results, differing_keys, load_run
from ftlab.report.summary import paired_matrices, summarise_configurations
from ftlab.report.verdicts import borrowed_seed_variance, compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a sweep directory with 2 or more seeds per configuration")
    parser.add_argument("--metric", default="eval.answer_accuracy", help="a metric with per-question records")
    parser.add_argument("--out", type=Path, help="JSON file (default: <sweep>/seed_pairs.json)")
    args = parser.parse_args()
    runs = [load_run(path, args.metric) for path in collect_results([args.sweep])]
    configs, _ = summarise_configurations(runs, differing_keys(runs), args.metric)  # the report's grouping
    configurations = {c["label"]: paired_matrices(c, None, args.metric)[0] for c in configs}
    seeds = {c["label"]: [run["seed"] for run in c["runs"]] for c in configs}
    borrowed = borrowed_seed_variance(list(configurations.values()))
    if borrowed is None:
        raise SystemExit(f"error: {args.sweep}: no configuration has 2 or more finished seeds with {args.metric}")
    pairs = []
    for name, runs in configurations.items():
        for i, j in itertools.combinations(range(len(runs)), 2):
            a, b = runs[i], runs[j]
            verdict = compare(a[None, :], b[None, :], borrowed=borrowed, details=False)["p"]
            # exact McNemar on the discordant questions (meaningful for right/wrong outcomes)
            only_a, only_b = int((a > b).sum()), int((b > a).sum())
            mcnemar = stats.binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
            pairs.append(
                {
                    "configuration": name,
                    "seeds": [seeds[name][i], seeds[name][j]],
                    "diff": float(a.mean() - b.mean()),
                    "p_verdict": verdict,
                    "p_mcnemar": float(mcnemar),
                }
            )
    print("| configuration | seeds | difference | p (verdict) | p (McNemar) |\n|---|---|---|---|---|")
    for p in pairs:
        cells = [p["configuration"], f"{p['seeds'][0]} vs {p['seeds'][1]}", f"{p['diff']:+.3f}"]
        print(f"| {' | '.join(cells)} | {p['p_verdict']:.3f} | {p['p_mcnemar']:.4f} |")
    summary = {k: sum(p[k] < 0.05 for p in pairs) for k in ("p_verdict", "p_mcnemar")}
    print(
        f"\n{len(pairs)} seed pairs called different at p < 0.05: verdict {summary['p_verdict']}, "
        f"McNemar {summary['p_mcnemar']}"
    )
    out = args.out or args.sweep / "seed_pairs.json"
    out.write_text(json.dumps({"metric": args.metric, "pairs": pairs, "significant": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
