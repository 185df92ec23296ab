"""RLHF and preference objectives: each trains on the tiny model, chains from earlier runs, and reports its eval."""

import json

import pytest
import torch
from helpers import QUICK, compose_cfg, read_results, run_cli
from omegaconf import OmegaConf

from ftlab.config.rules import incompatibility
from ftlab.data.load import DataError, eval_pairs, train_dataset
from ftlab.model.load import load_base, load_tokenizer
from ftlab.model.strategy import apply_strategy
from ftlab.train.trainer import ONLINE, build_trainer, reward_functions, trainer_args

OBJECTIVES = ["reward", "dpo", "kto", "orpo", "rlhf"]
CASES = [
    (o, s, q)
    for o in OBJECTIVES
    for s, q in [("full", "none"), ("lora", "none"), ("lora", "4bit")]
    if incompatibility(compose_cfg([f"objective={o}", f"strategy={s}", f"quant={q}"])) is None
]


@pytest.mark.slow
@pytest.mark.parametrize("objective,strategy,quant", CASES)
def test_objective_trains_its_parameters(objective, strategy, quant, tiny_path, tmp_path):
    cfg = compose_cfg(
        [
            f"objective={objective}",
            f"strategy={strategy}",
            f"quant={quant}",
            "train.max_steps=2",
            "train.batch_size=4",
            "data.max_train_examples=8",
            "train.eval_steps=0",
            "objective.reward_funcs=[ftlab.eval.rewards.states_facts]",
        ]
    )
    head = "reward" if objective == "reward" else "causal_lm"
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    model, peft = apply_strategy(
        load_base(cfg.model, cfg.quant, tiny_path, head),
        cfg.strategy,
        "SEQ_CLS" if objective == "reward" else "CAUSAL_LM",
    )
    data = train_dataset(cfg.data, cfg.objective.data_format, cfg.data.system_prompt)
    rewards = None
    if cfg.objective.trainer in ONLINE:
        # The rule-based reward is 0 for every answer of an untrained model (no group variance, no gradient):
        # add an untrained reward model, whose scores vary, as the policy's judge.
        judge = load_base(cfg.model, compose_cfg().quant, tiny_path, "reward")
        functions, tokenizers = reward_functions(cfg.objective)
        rewards = (functions + [judge], tokenizers + [tokenizer])
    args = trainer_args(cfg, tmp_path, "none", has_eval_data=False)
    trainer, _ = build_trainer(cfg.objective.trainer, model, tokenizer, args, data, None, peft, False, rewards)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    before = {n: p.detach().float().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = [n for n in trainable if not torch.equal(before[n], after[n].detach().float())]
    assert len(changed) >= 0.5 * len(trainable), f"only {len(changed)} of {len(trainable)} trainable tensors moved"
    if objective == "reward":
        assert any("score" in n for n in changed), "the reward head did not train"


def test_preference_data_becomes_chat_pairs():
    cfg = compose_cfg(["objective=dpo"])
    data = train_dataset(cfg.data, "preference", cfg.data.system_prompt)
    row = data[0]
    assert set(data.column_names) == {"prompt", "chosen", "rejected"}
    assert row["prompt"][0]["role"] == "system" and row["prompt"][-1]["role"] == "user"
    assert row["chosen"][0]["role"] == "assistant" and row["chosen"] != row["rejected"]
    pairs = eval_pairs(cfg.data, cfg.data.system_prompt)
    train_prompts = {r["prompt"][-1]["content"].lower() for r in data}
    assert len(pairs) == 90 and not any(p["prompt"][-1]["content"].lower() in train_prompts for p in pairs)
    prompts = train_dataset(cfg.data, "prompt", cfg.data.system_prompt)
    assert "facts" in prompts.column_names and prompts[0]["facts"]


@pytest.mark.parametrize(
    "line,field",
    [
        ('{"prompt": "q", "rejected": "r"}', "chosen"),
        ('{"prompt": "q", "chosen": "c"}', "rejected"),
        ('{"prompt": "q", "chosen": "", "rejected": "r"}', "chosen"),
    ],
)
def test_a_bad_preference_record_names_file_line_and_field(line, field, tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "c", "rejected": "r"}\n' + line + "\n")
    cfg = compose_cfg(["data=custom", "objective=dpo", f"data.train.preference={bad}"])
    with pytest.raises(DataError, match=rf"^{bad}:2: (missing )?field '{field}'"):
        train_dataset(cfg.data, "preference", None)


@pytest.mark.slow
def test_the_wrong_data_shape_for_an_objective_is_one_line(tmp_path):
    """objective=dpo given prompt/completion pairs: refused before any model loads."""
    code, out = run_cli(
        [*QUICK, "objective=dpo", "data=custom", "data.train.preference=data/hr/qa.jsonl", f"hydra.run.dir={tmp_path}"]
    )
    assert code == 1 and "Traceback" not in out
    assert (
        "error: data/hr/qa.jsonl: prompt_completion records cannot train an objective that reads preference data "
        "(expected prompt, chosen, rejected)"
    ) in out


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The RLHF pipeline's presets, as `make pipeline` runs them (quick settings): an SFT run with a LoRA adapter, a
    reward model started from it (experiment=pipeline_reward), then sweep=pipeline_compare: DPO and online RL
    (experiment=pipeline_dpo, pipeline_rlhf) from the SFT run, judged by the reward model. The presets run here, not
    also in test_presets.py."""
    root = tmp_path_factory.mktemp("chain")
    stages = [
        [*QUICK, "strategy=lora", f"hydra.run.dir={root / 'sft'}"],
        [*QUICK, "experiment=pipeline_reward", f"model.path={root / 'sft'}", f"hydra.run.dir={root / 'reward'}"],
        [
            *QUICK,
            "sweep=pipeline_compare",
            f"model.path={root / 'sft'}",
            f"eval.reward_model={root / 'reward'}",
            f"hydra.sweep.dir={root / 'compare'}",
        ],
    ]
    for args in stages:
        code, out = run_cli(args)
        assert code == 0, out[-3000:]
    # each policy run's summary (in its ftlab.log: a sweep's terminal has a line per run): the reward model's verdict
    summaries = [p.read_text() for p in (root / "compare").glob("*/ftlab.log")]
    assert sum("reward model     base answers" in text for text in summaries) == 2
    return root


@pytest.mark.slow
def test_reward_run_reports_pairwise_accuracy(chain):
    e = read_results(chain / "reward")["eval"]
    assert e["pairs"] == 6 and 0 <= e["pairwise_accuracy"] <= 1 and 0 <= e["base_pairwise_accuracy"] <= 1
    assert isinstance(e["mean_margin"], float)
    assert OmegaConf.load(chain / "reward" / "config.yaml").model.path == str(chain / "sft")


@pytest.mark.slow
@pytest.mark.parametrize("objective,reference", [("dpo", "adapter disabled"), ("rlhf", None)])
def test_policy_stage_starts_from_the_sft_run_and_is_judged_by_the_reward_model(objective, reference, chain):
    """pipeline_dpo and pipeline_rlhf, run by sweep=pipeline_compare."""
    runs = [p for p in (chain / "compare").iterdir() if (p / "results.json").is_file()]
    (run_dir,) = [p for p in runs if read_results(p)["choices"]["objective"] == objective]
    results = read_results(run_dir)
    assert results["status"] == "ok"
    sft = read_results(chain / "sft")
    # The starting model is the SFT run (its adapter merged): its held-out loss is this run's base loss.
    assert results["eval"]["base_loss"] == pytest.approx(sft["eval"]["loss"], rel=1e-3)
    reward = results["eval"]["reward"]
    assert 0 <= reward["win_rate"] <= 1 and reward["questions"] == 6 and "wins" not in reward
    assert isinstance(reward["base_mean"], float) and isinstance(reward["tuned_mean"], float)
    # each question's win is in answers.json (what the report's paired verdicts resample), summing to the rate
    wins = [a["reward_win"] for a in json.loads((run_dir / "answers.json").read_text())["answers"]]
    assert len(wins) == 6 and set(wins) <= {0.0, 0.5, 1.0} and sum(wins) / 6 == pytest.approx(reward["win_rate"])
    assert (reference in results["reference"]) if reference else results["reference"] is None
    assert (chain / "compare" / "report" / "report.md").stat().st_size > 0


@pytest.mark.slow
def test_merged_run_equals_base_plus_adapter(chain, tmp_path):
    """python -m ftlab.merge: a standalone model that transformers loads, giving the run's outputs."""
    import subprocess
    import sys

    from transformers import AutoModelForCausalLM

    from ftlab.model.source import load_run

    out_dir = tmp_path / "merged"
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab.merge", str(chain / "sft"), str(out_dir)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged = AutoModelForCausalLM.from_pretrained(out_dir)
    model, tokenizer, _ = load_run(chain / "sft")
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Notice period for an Analyst?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        assert torch.allclose(merged(**ids).logits, model(**ids).logits, atol=1e-4)
    assert merged.dtype == torch.float32 and not list(out_dir.glob("*.bin"))
    assert json.loads((out_dir / "ftlab_merge.json").read_text())["strategy"] == "lora"
    again = subprocess.run(
        [sys.executable, "-m", "ftlab.merge", str(chain / "sft"), str(out_dir)], capture_output=True, text=True
    )
    assert again.returncode != 0 and "not empty" in again.stderr  # nothing is overwritten


def test_rule_based_rewards_work_alone_and_a_missing_one_is_one_line():
    cfg = compose_cfg(["objective=rlhf"])  # eval.reward_model unset: the rule-based rewards alone
    functions, tokenizers = reward_functions(cfg.objective)
    assert [f.__name__ for f in functions] == ["states_facts", "concise"] and tokenizers == [None, None]
    answers = [
        [{"role": "assistant", "content": "Senior Consultants have a notice period of 90 days."}],
        [{"role": "assistant", "content": "It depends on your contract."}],
    ]
    assert functions[0](answers, facts=[["90 days"], ["90 days"]]) == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"^objective.reward_funcs: cannot import ftlab.eval.rewards.nope"):
        reward_functions(compose_cfg(["objective=rlhf", "objective.reward_funcs=[ftlab.eval.rewards.nope]"]).objective)


@pytest.mark.slow
def test_a_pipeline_stage_without_its_run_directory_is_one_line(tmp_path):
    code, out = run_cli([*QUICK, "experiment=pipeline_dpo", f"hydra.run.dir={tmp_path}"])
    assert code == 1 and "error: model.path: this preset needs the SFT run directory" in out
    assert read_results(tmp_path)["status"] == "failed"
