"""A run's model card (run_dir/README.md, Hugging Face format) from its redacted config.yaml and its results."""

from pathlib import Path

import yaml
from omegaconf import OmegaConf

from ftlab.core.files import write_atomic

# Licenses of the shipped bases (conf/model/*.yaml); any other base's license is left out, not guessed.
LICENSES = {
    "tiny": "apache-2.0",
    "meta-llama/Llama-3.2-": "llama3.2",
    "Qwen/Qwen2.5-0.5B": "apache-2.0",
    "mistralai/Mistral-7B-": "apache-2.0",
}
# (label, results.eval key of the fine-tuned model); the base's is "base_" + key.
METRICS = [
    ("answer accuracy (states the expected facts)", "answer_accuracy"),
    ("held-out answer loss", "loss"),
    ("perplexity", "perplexity"),
    ("pairwise accuracy (reward model)", "pairwise_accuracy"),
    ("mean margin (reward model)", "mean_margin"),
]
# quant.method -> what was done, in words; {settings}: the method's node of the quant config.
QUANT_WORDS = {
    "none": "the base in its own dtype ({dtype})",
    "bnb": "bitsandbytes, {settings}",
    "qat": "quantization-aware training (torchao), {settings}; the saved model holds the converted int weights",
    "ptq": "plain fine-tuning, then post-training quantization (torchao), {settings}; the saved model holds the int "
    "weights",
    "sparsity": "fine-tuned under fixed sparsity masks, {settings}",
}


def write_model_card(run_dir: Path, results: dict) -> Path:
    """run_dir/README.md, from the run's config.yaml and its results (written like every file ftlab writes: whole or
    not at all, secrets hidden)."""
    from ftlab.model.source import run_config

    run_dir = Path(run_dir)
    cfg = OmegaConf.to_container(run_config(run_dir), resolve=True)
    path = run_dir / "README.md"
    write_atomic(path, front_matter(cfg, run_dir) + body(cfg, results, run_dir))
    return path


def base_of(cfg: dict) -> tuple[str, str | None]:
    """(what the base is, in words; its hub id or None). A base that is an earlier run is followed to its own base."""
    from ftlab.core.files import resolve
    from ftlab.model.source import is_run_dir, run_config

    path = cfg["model"]["path"]
    if path == "tiny":
        return "ftlab's tiny Llama-architecture model (1M parameters, built locally from the shipped data)", None
    local = resolve(path)
    if is_run_dir(local):
        words, hub = base_of(OmegaConf.to_container(run_config(local), resolve=True))
        return f"the earlier ftlab run `{local.name}` (its trained weights merged into {words})", hub
    if local.exists() or path.startswith(("/", ".", "~")):
        return f"the local model folder `{path}`", None
    return f"[{path}](https://huggingface.co/{path})", path


def license_of(cfg: dict) -> str | None:
    path = cfg["model"]["path"]
    _, hub = base_of(cfg)
    return next((lic for prefix, lic in LICENSES.items() if (hub or path).startswith(prefix)), None)


def is_peft_adapter(cfg: dict, run_dir: Path) -> bool:
    """A PEFT adapter to put on the base; a QAT or PTQ run saves its converted whole model even after LoRA."""
    return cfg["strategy"]["kind"] == "peft" and (run_dir / "model" / "adapter_config.json").is_file()


def front_matter(cfg: dict, run_dir: Path) -> str:
    _, hub = base_of(cfg)
    reward = cfg["objective"]["head"] == "reward"
    tags = ["ftlab", "trl", cfg["strategy"]["name"], cfg["objective"]["name"]]
    tags += [] if cfg["quant"]["name"] == "none" else [cfg["quant"]["name"]]
    meta = {
        **({"base_model": hub} if hub else {}),
        "library_name": "peft" if is_peft_adapter(cfg, run_dir) else "transformers",
        "tags": tags,
        **({"license": license_of(cfg)} if license_of(cfg) else {}),
        "pipeline_tag": "text-classification" if reward else "text-generation",
    }
    note = "" if hub else "# base_model: left out, the base is not on the Hugging Face Hub (see Base model)\n"
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + note + "---\n\n"


def body(cfg: dict, results: dict, run_dir: Path) -> str:
    s, o, q, d = cfg["strategy"], cfg["objective"], cfg["quant"], cfg["data"]
    words, _ = base_of(cfg)
    params, train = results.get("params") or {}, results.get("train") or {}
    trained = (
        f"{params['trainable']:,} of {params['total']:,} parameters trained "
        f"({100 * params['trainable'] / params['total']:.2f}%)"
        if params.get("total")
        else "parameters trained"
    )
    peft = {k: v for k, v in (s.get("peft") or {}).items() if not k.startswith("_")}
    parts = [
        f"# {results.get('run_name') or run_dir.name}\n",
        f"A `{s['name']}` fine-tune made with ftlab: objective `{o['name']}`, quantization `{q['name']}`, "
        f"data `{d['name']}`.\n",
        f"## Base model\n\n{words}; dtype `{cfg['model']['dtype']}`.\n",
        f"## Strategy\n\n`{s['name']}` (kind `{s['kind']}`): {trained}."
        + (f" PEFT config: {_inline(peft)}." if peft else "")
        + (f" Bottleneck adapters: {_inline(s['adapter'])}." if s.get("adapter") else "")
        + (f" Last {s['train_last_blocks']} blocks trained." if s["kind"] == "freeze" else "")
        + "\n",
        f"## Objective\n\n`{o['name']}`: TRL's `{o['trainer']}` trainer on `{o['data_format']}` data"
        + (f", trainer arguments {_inline(o['args'])}" if o.get("args") else "")
        + ".\n",
        data_section(cfg, results),
        quant_section(cfg, results.get("compression")),
        hyperparameters(cfg, train, results.get("seed", cfg.get("seed"))),
        eval_section(results),
        how_to_load(cfg, run_dir),
        limits(cfg, results),
    ]
    rerun = (results.get("environment") or {}).get("rerun")
    packages = (results.get("environment") or {}).get("packages") or {}
    if rerun:
        versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
        parts.append(f"## Reproduce\n\n```bash\n{rerun}\n```\n\n{versions}\n")
    return "\n".join(parts)


def data_section(cfg: dict, results: dict) -> str:
    d, fmt = cfg["data"], cfg["objective"]["data_format"]
    prep = (results.get("data") or {}).get("preparation") or {}
    lines = [
        f"## Data\n\nTraining: `{d['train'].get(fmt)}` ({fmt})"
        + (
            f", {prep['train']} examples after cleaning ({prep.get('duplicates_removed', 0)} duplicates removed, "
            f"{prep.get('leaked_eval_questions', 0)} held-out questions also in training, "
            f"{prep.get('validation', 0)} kept for validation)"
            if "train" in prep
            else ""
        )
        + ".",
        f"Held-out evaluation: `{d['eval']}`." if d.get("eval") else "No held-out questions.",
        f'System prompt: "{d["system_prompt"]}"' if d.get("system_prompt") else "No system prompt.",
    ]
    return "\n".join(lines) + "\n"


def quant_section(cfg: dict, compression: dict | None) -> str:
    q = cfg["quant"]
    detail = QUANT_WORDS[q["method"]].format(settings=_inline(q.get(q["method"])), dtype=cfg["model"]["dtype"])
    done = f" Result: {_inline(compression)}." if compression and "overall" in compression else ""
    return f"## Quantization\n\n`{q['name']}`: {detail}.{done}\n"


def hyperparameters(cfg: dict, train: dict, seed) -> str:
    opt, t = cfg["optimizer"], cfg["train"]
    rows = [
        ("optimizer", opt["optim"]),
        ("learning rate", opt["lr"]),
        ("scheduler", opt["scheduler"]),
        ("warmup", opt["warmup"]),
        ("weight decay", opt["weight_decay"]),
        ("batch size x grad accumulation", f"{t['batch_size']} x {t['grad_accum']}"),
        ("epochs / max steps", f"{t['epochs']} / {t['max_steps']}"),
        ("steps done", train.get("steps")),
        ("max length (tokens)", t["max_length"]),
        ("gradient checkpointing", t["gradient_checkpointing"]),
        ("seed", seed),
        ("training loss", _num(train.get("loss"))),
        ("training time (s)", _num(train.get("runtime_s"), 0)),
        ("tokens/s", _num(train.get("tokens_per_s"), 0)),
        ("peak memory (MB)", _num(train.get("peak_memory_mb"), 0)),
    ]
    return "## Hyperparameters\n\n| setting | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def eval_section(results: dict) -> str:
    e = results.get("eval") or {}
    rows = [(label, e.get(f"base_{key}"), e[key]) for label, key in METRICS if e.get(key) is not None]
    if e.get("reward"):
        rows.append(("reward model score", e["reward"].get("base_mean"), e["reward"].get("tuned_mean")))
    if not rows:
        return "## Evaluation against the base\n\nNo evaluation results.\n"
    table = "| metric | base | fine-tuned |\n|---|---|---|\n" + "".join(
        f"| {label} | {_num(base)} | {_num(tuned)} |\n" for label, base, tuned in rows
    )
    how = (
        f"{e['pairs']} held-out preference pairs: correct when the chosen answer scores above the rejected one"
        if "pairs" in e
        else f"{e.get('questions', '?')} held-out questions, greedy answers: correct when an answer "
        f"states every expected fact as whole words"
    )
    text = f"## Evaluation against the base\n\nOn {how}.\n\n{table}"
    sample = results.get("sample")
    if sample:
        text += (
            f"\nExample: *{sample['question']}* (expected: {', '.join(sample['expected'])})\n\n"
            f"- base: {sample['base_answer']}\n- fine-tuned: {sample['tuned_answer']}\n"
        )
    return text


def how_to_load(cfg: dict, run_dir: Path) -> str:
    _, hub = base_of(cfg)
    base = f'"{hub}"' if hub else "model_path(run_config(Path(RUN_DIR)).model)  # ftlab finds (or builds) it"
    bnb = cfg["quant"]["bnb"]
    load_args = f'dtype="{cfg["model"]["dtype"]}"' + (
        f", quantization_config=BitsAndBytesConfig(**{bnb!r})" if bnb else ""
    )
    head = f'RUN_DIR = "{run_dir.name}"  # this folder\n'
    reward = cfg["objective"]["head"] == "reward"  # a one-score head on the same network
    auto_class = "AutoModelForSequenceClassification" if reward else "AutoModelForCausalLM"
    load_args += ", num_labels=1" if reward else ""
    ftlab_code = (
        f"```python\nfrom ftlab.model.source import load_run\n\n{head}"
        "model, tokenizer, cfg = load_run(RUN_DIR)  # base, quantization and chat template as trained\n```\n"
    )
    if cfg["strategy"]["kind"] == "adapter":
        plain = (
            "ftlab's bottleneck adapters are not a PEFT format: `python -m ftlab.merge RUN_DIR OUT_DIR` exports a "
            "model that `AutoModelForCausalLM.from_pretrained(OUT_DIR, trust_remote_code=True)` loads.\n"
        )
    elif is_peft_adapter(cfg, run_dir):
        auto = f"{auto_class}, AutoTokenizer" + (", BitsAndBytesConfig" if bnb else "")
        plain = (
            f"```python\nfrom pathlib import Path\n\nfrom peft import PeftModel\nfrom transformers import {auto}\n"
            + ("" if hub else "\nfrom ftlab.model.source import model_path, run_config\n")
            + f"\n{head}base_path = {base}\nbase = {auto_class}.from_pretrained(base_path, {load_args})\n"
            'model = PeftModel.from_pretrained(base, f"{RUN_DIR}/model")\n'
            'tokenizer = AutoTokenizer.from_pretrained(f"{RUN_DIR}/model")\n```\n'
        )
    else:
        plain = (
            f"```python\nfrom transformers import {auto_class}, AutoTokenizer\n\n{head}"
            f'model = {auto_class}.from_pretrained(f"{{RUN_DIR}}/model")\n'
            'tokenizer = AutoTokenizer.from_pretrained(f"{RUN_DIR}/model")\n```\n'
        )
    use = (
        "It scores a conversation (question and answer through the chat template): the higher, the more preferred."
        if reward
        else f"Ask it as it was evaluated (greedy, {cfg['eval']['max_new_tokens']} new "
        "tokens, the system prompt above, the chat template saved with the tokenizer): `python -m ftlab.chat RUN_DIR`."
    )
    libraries = " and peft" if is_peft_adapter(cfg, run_dir) else ""
    return f"## How to load it\n\nWith ftlab:\n\n{ftlab_code}\nWith transformers{libraries}:\n\n{plain}\n{use}\n"


def limits(cfg: dict, results: dict) -> str:
    e = results.get("eval") or {}
    judged = (
        f"- Judged on {e['pairs']} held-out preference pairs like its training pairs: it ranks those, which "
        "says little about answers unlike them."
        if "pairs" in e
        else f"- Judged on {e.get('questions', 'a few')} held-out questions by exact fact strings: a right answer in "
        "other words counts as wrong, and a wrong answer that happens to contain the string counts as right."
    )
    lines = [
        "## Intended use and limits\n",
        "- Made to study fine-tuning: compare it with its base and with other runs, not to decide anything.",
        judged,
        "- It knows what its training data say and nothing newer; it can state a wrong rule fluently.",
    ]
    if cfg["data"]["name"] == "hr":
        lines.append("- The HR data describe Velmora Consulting, a fictional company: its policies are invented.")
    if cfg["quant"]["name"] != "none":
        lines.append(f"- Trained with `{cfg['quant']['name']}`: load it the same way, or outputs differ slightly.")
    lines.append("- The base model's license and limitations apply as well.")
    return "\n".join(lines) + "\n"


def _inline(mapping) -> str:
    return (
        ", ".join(f"`{k}={v}`" for k, v in mapping.items() if v is not None)
        if isinstance(mapping, dict)
        else f"`{mapping}`"
    )


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
