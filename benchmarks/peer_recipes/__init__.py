"""One module per peer framework benchmarks/peers.py runs: how to install it, write its dataset and config file from
the shared job, and where its run leaves the model and its training time (the interface: benchmarks/README.md)."""

import json
from pathlib import Path


def write_messages(job: dict, path: Path) -> None:
    """The shared rows as OpenAI-style conversations, {"messages": [system, user, assistant]} a line: the dataset
    format Axolotl, ms-swift, oumi and torchtune all read."""
    with open(job["train_file"], encoding="utf-8") as rows, path.open("w", encoding="utf-8") as out:
        for line in rows:
            row = json.loads(line)
            turns = [("system", row["system"]), ("user", row["prompt"]), ("assistant", row["completion"])]
            messages = [{"role": role, "content": content} for role, content in turns]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
