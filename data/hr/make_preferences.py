"""Build the HR preference, KTO and RL-prompt files from qa.jsonl, heldout.jsonl and generic.jsonl (deterministic)."""

import json
import math
import random
import re
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 1234
WRONG_SHARE = 0.4  # share of rejected answers that are the company answer with a wrong fact; the rest are vague
SHARED = ("notice", "leave", "parental")  # fact-id prefixes whose facts share one topic
MIN_TOPIC_SCORE = 8.0  # a generic answer scoring lower for every topic is never used as a rejected answer
NEAR_TIE = 0.8  # generic answers matching at least this share of the best score are drawn from at random
# Key strings with no other fact of the same kind get one of these wrong values instead of another policy's fact.
SINGLE_WRONG = {
    "4 months": ["6 months", "3 months"],
    "3 days a week": ["2 days a week", "4 days a week"],
    "8 extra hours": ["10 extra hours", "6 extra hours"],
    "10:00 to 16:00": ["09:00 to 17:00", "11:00 to 15:00"],
    "every 6 months": ["every 12 months", "every 3 months"],
    "5 years of service": ["3 years of service", "7 years of service"],
    "25th of each month": ["28th of each month", "15th of each month"],
}
STOP = set(
    "a an the of for to in on at is are am be do does did i im i'm my me we our you your it its and or what "
    "whats what's which who can could would should will there this that with as by from if please tell about "
    "any up velmora consulting company employer here now just like know need hi analyst analysts consultant "
    "consultants senior manager managers director directors partner partners grade level role job".split()
)


def read(name):
    return [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines()]


def write(name, rows):  # one JSON object a line, a final newline, no blank lines
    (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def words(text):  # content words; grade names are dropped so that topics match across grades
    return frozenset(w for w in re.findall(r"[a-z][a-z'-]*", text.lower()) if w not in STOP)


def topic(fact):
    return fact.split("_")[0] if fact.split("_")[0] in SHARED else fact


qa, heldout, generic = read("qa.jsonl"), read("heldout.jsonl"), read("generic.jsonl")
facts = {r["id"].rsplit("-", 1)[0]: r["facts"] for r in heldout}  # fact id -> key strings
fact_of = {r["answer"]: r["id"].rsplit("-", 1)[0] for r in heldout}  # every qa completion is one of these answers
train = [dict(prompt=r["prompt"], chosen=r["completion"], fact=fact_of[r["completion"]]) for r in qa]
test = [dict(prompt=r["question"], chosen=r["answer"], fact=fact_of[r["answer"]]) for r in heldout]
# No held-out prompt is a training prompt, even lowercased and without punctuation (as tests/test_data.py compares).
norm = lambda text: re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()  # noqa: E731
assert not {norm(r["prompt"]) for r in test} & {norm(r["prompt"]) for r in train}, "held-out prompt in training"

# Topic vocabularies: the content words of each topic's training questions, weighted by inverse topic frequency.
topic_words = {}
for r in train:
    topic_words.setdefault(topic(r["fact"]), Counter()).update(words(r["prompt"]))
topic_idf = {w: math.log(len(topic_words) / n) for w, n in Counter(w for c in topic_words.values() for w in c).items()}


def topic_score(text, t):
    return sum(topic_idf[w] * math.log1p(topic_words[t][w]) for w in sorted(words(text)) if w in topic_words[t])


# Each distinct generic answer joins the topic closest to its own words plus (on average) its users' questions;
# answers close to no topic (payslips, onboarding, job grades, ...) are never used.
asked = {}
for g in generic:
    asked.setdefault(g["messages"][1]["content"], []).append(g["messages"][0]["content"])
pool = {}
for a, qs in asked.items():
    scores = {t: topic_score(a, t) + sum(topic_score(q, t) for q in qs) / len(qs) for t in topic_words}
    best = max(scores, key=scores.get)
    if scores[best] >= MIN_TOPIC_SCORE:
        pool.setdefault(best, []).extend((words(q), a) for q in qs)
generic_df = Counter(w for qs in asked.values() for q in qs for w in words(q))


def similarity(a, b):  # idf-weighted Jaccard overlap of two sets of content words
    weight = {w: math.log((len(generic) + 1) / (generic_df[w] + 1)) for w in sorted(a | b)}  # sorted: same sums
    return sum(weight[w] for w in sorted(a & b)) / (sum(weight.values()) or 1)


def vague(prompt, fact, rng):
    """A generic answer of the prompt's topic whose user question (and text) share the most words with the prompt."""
    t = topic(fact)
    if t not in pool:  # fallback: the topic whose question vocabulary overlaps this one's most
        t = max(pool, key=lambda u: sum(topic_words[t][w] * topic_words[u][w] for w in topic_words[t]))
    p, score = words(prompt), {}
    for q, a in pool[t]:
        score[a] = max(score.get(a, 0.0), similarity(p, q) + similarity(p, words(a)))
    top = max(score.values())
    return rng.choice(sorted(a for a, s in score.items() if s >= NEAR_TIE * top))


def wrong(chosen, fact, rng):
    """The company answer with its key string swapped for another fact of the same kind (days, weeks, EUR, ...)."""

    def kind(f):
        return re.sub(r"\d[\d,:]*", "#", facts[f][0]), topic(f) if topic(f) in SHARED else ""

    key, same = facts[fact][0], sorted({facts[f][0] for f in facts if f != fact and kind(f) == kind(fact)})
    value = rng.choice(same or SINGLE_WRONG[key])  # notice with notice, leave with leave, EUR with EUR, ...
    assert value != key and chosen.count(key) == 1, (chosen, value)
    return chosen.replace(key, value)


def add_rejected(rows, rng):
    order = list(range(len(rows)))
    rng.shuffle(order)
    for i, idx in enumerate(order):
        r = rows[idx]
        if i < round(WRONG_SHARE * len(rows)):
            r["kind"], r["rejected"] = "wrong_fact", wrong(r["chosen"], r["fact"], rng)
        else:
            r["kind"], r["rejected"] = "vague", vague(r["prompt"], r["fact"], rng)
        assert r["rejected"] != r["chosen"] and not any(k in r["rejected"] for k in facts[r["fact"]]), r


def check(name, schema):
    """Every row has exactly the schema's fields, of the right type and non-empty; no row occurs twice."""
    rows = read(name)
    for r in rows:
        assert list(r) == list(schema), (name, r)
        for field, kind in schema.items():
            texts = [] if kind is bool else r[field] if kind is list else [r[field]]  # a list holds non-empty strings
            assert isinstance(r[field], kind) and (kind is bool or texts), (name, field, r)
            assert all(isinstance(v, str) and v.strip() for v in texts), (name, field, r)
    keys = [json.dumps(r, sort_keys=True) for r in rows]
    assert len(keys) == len(set(keys)), f"{name}: duplicate rows"
    return len(rows)


rng = random.Random(SEED)
add_rejected(train, rng)
add_rejected(test, rng)
pair = ("prompt", "chosen", "rejected")
write("preferences.jsonl", [{k: r[k] for k in pair} for r in train])
write("heldout_preferences.jsonl", [{k: r[k] for k in pair} for r in test])
kto = [dict(prompt=r["prompt"], completion=r[c], label=c == "chosen") for r in train for c in ("chosen", "rejected")]
rng.shuffle(kto)
write("kto.jsonl", kto)
write("rl_prompts.jsonl", [dict(prompt=r["prompt"], facts=facts[r["fact"]]) for r in train])
write("heldout_rl_prompts.jsonl", [dict(prompt=r["question"], facts=r["facts"]) for r in heldout])

rl, kto_fields = {"prompt": str, "facts": list}, {"prompt": str, "completion": str, "label": bool}
schemas = {
    "preferences.jsonl": dict.fromkeys(pair, str),
    "heldout_preferences.jsonl": dict.fromkeys(pair, str),
    "kto.jsonl": kto_fields,
    "rl_prompts.jsonl": rl,
    "heldout_rl_prompts.jsonl": rl,
}
for name, schema in schemas.items():
    print(f"{name}: {check(name, schema)} rows")
for label, rows in (("preferences.jsonl", train), ("heldout_preferences.jsonl", test)):
    print(f"{label} rejected: {dict(sorted(Counter(r['kind'] for r in rows).items()))}")
