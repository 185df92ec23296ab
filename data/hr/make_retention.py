"""Build the retention set and the local lm-eval task from generic.jsonl (standard library only, deterministic).

retention.jsonl: general HR conversations held out of the tiny model's build (ftlab/model/tiny.py leaves these rows
out of its pre-training and its tokenizer). Each keeps a general answer that the base learned from OTHER phrasings
(every chosen answer occurs at least twice in generic.jsonl), so the base is good on these rows without having seen
them, and fine-tuning on Velmora's rules can make it worse at them: that is what forgetting looks like here. No chosen
answer is ever a rejected answer of the preference or KTO files, so DPO/KTO do not train against them directly.

harness/hr_general.jsonl: the same held-out questions as a 4-way multiple-choice task for lm-eval-harness: the general
answer against three answers to other retention questions, on other topics (no content word of the question in
common), drawn with a fixed seed."""

import json
import random
import re
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20
MAX_ROWS = 96  # one row per general answer (77 of them), then a second for the most repeated answers
CHOICES = 4
STOP = set("a an the of for to in on at is are am be do does did i my me we you your it and or what can how".split())


def read(name):
    return [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines()]


def write(path, rows):
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def words(text):
    return set(re.findall(r"[a-z']+", text.lower())) - STOP


generic = read("generic.jsonl")
answer = [g["messages"][-1]["content"] for g in generic]
rejected = {r["rejected"] for name in ("preferences.jsonl", "heldout_preferences.jsonl") for r in read(name)}
rejected |= {r["completion"] for r in read("kto.jsonl") if not r["label"]}
count = Counter(answer)
# Held out: answers never rejected anywhere, of which another row stays in pre-training.
eligible = [i for i, a in enumerate(answer) if a not in rejected and count[a] >= 2]
first, second, seen = [], [], Counter()
for i in eligible:  # the last rows of each answer: the first phrasings stay in pre-training
    seen[answer[i]] += 1
    if seen[answer[i]] == count[answer[i]]:
        first.append(i)
    elif seen[answer[i]] == count[answer[i]] - 1 and count[answer[i]] >= 5:
        second.append(i)
held = sorted(first + sorted(second, key=lambda i: -count[answer[i]])[: MAX_ROWS - len(first)])
retention = [generic[i] for i in held]
write(HERE / "retention.jsonl", retention)

# The multiple-choice task asks what the base learned in pre-training: one pre-training row per general answer that
# no preference or KTO file rejects (a retention row's answer is asked with a pre-training phrasing).
rng = random.Random(SEED)
kept = set(held)
known = {}
for i, a in enumerate(answer):
    if a not in rejected and i not in kept:
        known.setdefault(a, i)
task = []
for n, i in enumerate(sorted(known.values())):
    question, right = generic[i]["messages"][0]["content"], answer[i]
    asked = words(question)  # distractors: answers to questions that share no content word with this one
    others = sorted(
        a for a, j in known.items() if a != right and not words(generic[j]["messages"][0]["content"]) & asked
    )
    choices = rng.sample(others, CHOICES - 1) + [right]
    rng.shuffle(choices)
    task.append({"id": n, "question": question, "choices": choices, "label": choices.index(right)})
write(HERE / "harness" / "hr_general.jsonl", task)
assert len({r["question"] for r in task}) == len(task)
print(f"retention.jsonl: {len(retention)} rows ({len(first)} answers); harness/hr_general.jsonl: {len(task)} questions")
