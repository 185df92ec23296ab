"""`ftlab <verb>`: one command for every tool (`ftlab --help` lists them without importing torch).

A small dispatcher rather than click or typer: `ftlab train` hands its arguments to Hydra, which parses sys.argv
itself (overrides, -m, --cfg, --help, -sc completion), and every other verb already has its own argparse parser and
--help; a CLI library in front would parse each command line twice or hide Hydra's. `python -m ftlab key=value`
stays the Hydra run exactly as before, and `ftlab key=value` (no verb) is `ftlab train key=value`."""

import importlib
import os
import sys

VERBS = {  # verb: (module, function, what it does): each imported only when its verb runs
    "train": ("ftlab.__main__", "cli", "run an experiment or a sweep: ftlab train [overrides] [-m] [--verbose]"),
    "runs": ("ftlab.report.runs", "main", "the runs under outputs/ as a table: status, choices, accuracy, loss"),
    "report": ("ftlab.report", "main", "the comparison report of runs or sweeps (verdicts, plots)"),
    "data": ("ftlab.datacheck", "main", "ftlab data check [overrides]: what a run would train on, checked"),
    "chat": ("ftlab.chat", "main", "ask a finished run questions (or --prompts q.jsonl --out a.jsonl)"),
    "demo": ("ftlab.demo", "main", "base vs fine-tuned side by side in a local web page"),
    "lab": ("ftlab.lab", "main", "a local web page: runs compared, sweeps' reports, runs launched and watched"),
    "merge": ("ftlab.merge", "main", "a run as one standalone Hugging Face model"),
    "export": ("ftlab.export.__main__", "main", "a run as GGUF for llama.cpp, with an Ollama Modelfile"),
    "push": ("ftlab.push", "main", "a finished run on the Hugging Face Hub with its card"),
    "card": ("ftlab.card", "main", "(re)write a run's model card"),
}
SUBVERBS = {"data": "check"}  # `ftlab data check`: the verb's one sub-command, room for more


def usage() -> str:
    width = max(map(len, VERBS)) + 7
    lines = [f"  {(v + ' ' + SUBVERBS.get(v, '')).strip():<{width}} {what}" for v, (_, _, what) in VERBS.items()]
    return "\n".join(
        [
            "usage: ftlab <verb> [arguments]    (ftlab <verb> --help: the verb's own help)",
            "",
            "Fine-tune a language model, evaluate it against its base, compare runs, ship the result.",
            "",
            "verbs:",
            *lines,
            "",
            "ftlab key=value ... is ftlab train key=value ...",
            'shell completion (bash): eval "$(ftlab train -sc install=bash)"',
        ]
    )


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["-sc"] or (argv[:1] == ["train"] and argv[1:2] == ["-sc"]):
        return complete(argv[argv.index("-sc") :])
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        if "=" in verb or verb.startswith("-"):  # overrides or Hydra's flags without a verb: a run, as before
            verb, rest = "train", argv
        else:
            raise SystemExit(f"error: ftlab: unknown verb {verb!r} (choose from {', '.join(VERBS)}; ftlab --help)")
    if verb in SUBVERBS:
        if rest[:1] != [SUBVERBS[verb]]:
            raise SystemExit(f"error: ftlab {verb}: expected `ftlab {verb} {SUBVERBS[verb]} ...`")
        rest = rest[1:]
    module, function, _ = VERBS[verb]
    run = getattr(importlib.import_module(module), function)
    if verb == "train":
        rest = ["log.verbose=true" if arg in ("-v", "--verbose") else arg for arg in rest]  # Hydra takes no --verbose
        sys.argv = [sys.argv[0], *rest]  # Hydra reads sys.argv (and names the completion script after argv[0])
        return run()
    return run(rest)


def complete(flags: list) -> None:
    """Hydra's bash completion (`ftlab train -sc install=bash`). The script it installs asks `ftlab -sc query=bash`
    with the whole line in COMP_LINE: the verb is completed here, and a `train` line is handed to Hydra without the
    verb, so it completes group options and keys as `python -m ftlab` does."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    first = words[1] if len(words) > 1 else ""
    if any(flag.startswith("query=") for flag in flags) and "=" not in first and not first.startswith("-"):
        if len(words) == 1 or (len(words) == 2 and not line.endswith(" ")):  # the verb itself
            print(" ".join(verb for verb in VERBS if verb.startswith(first)))
            return
        if first != "train":
            return  # the other verbs take paths and flags: the shell's own completion (-o default)
        os.environ["COMP_LINE"] = line.replace(" train", "", 1)
    sys.argv = [sys.argv[0], *flags]
    importlib.import_module("ftlab.__main__").cli()
