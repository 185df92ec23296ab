"""Every sensible strategy x quant pair trains a few steps on the tiny model: what should train changes, the rest
not. A new PEFT method is one YAML file."""

import pytest
import torch
from helpers import compose_cfg

from ftlab.config.rules import incompatibility
from ftlab.data.load import train_dataset
from ftlab.model.load import load_base, load_tokenizer
from ftlab.model.strategy import apply_strategy, peft_config
from ftlab.train.trainer import trainer_args

STRATEGIES = ["full", "freeze", "lora", "dora", "prefix", "prompt", "ia3", "adapter"]
QUANTS = ["none", "8bit", "4bit"]
PAIRS = [
    (s, q) for s in STRATEGIES for q in QUANTS if incompatibility(compose_cfg([f"strategy={s}", f"quant={q}"])) is None
]


def snapshot(model) -> dict:
    return {n: p.detach().float().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("strategy,quant", PAIRS)
def test_strategy_trains_what_it_should(strategy, quant, tiny_path, tmp_path):
    from trl import SFTTrainer

    cfg = compose_cfg(
        [
            f"strategy={strategy}",
            f"quant={quant}",
            "train.max_steps=3",
            "train.batch_size=4",
            "data.max_train_examples=16",
        ]
    )
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    model, peft_config = apply_strategy(load_base(cfg.model, cfg.quant, tiny_path), cfg.strategy)
    data = train_dataset(cfg.data, cfg.objective.data_format, cfg.data.system_prompt)
    trainer = SFTTrainer(
        model=model,
        args=trainer_args(cfg, tmp_path, "none", has_eval_data=False),
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable, "nothing trains"
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    unchanged = [n for n in trainable if torch.equal(before[n], after[n])]
    moved = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert not unchanged, f"trainable but unchanged: {unchanged[:3]}"
    assert not moved, f"frozen but changed: {moved[:3]}"
    total = sum(p.numel() for p in trainer.model.parameters())
    share = sum(p.numel() for n, p in trainer.model.named_parameters() if n in trainable) / total
    if strategy in ("full",):
        assert share == 1.0
    elif strategy == "freeze":
        assert 0.2 < share < 0.9
    else:
        assert share < 0.2, f"{strategy} trains {share:.0%} of the parameters"


def test_freeze_trains_only_the_last_blocks(tiny_path):
    cfg = compose_cfg(["strategy=freeze", "strategy.train_last_blocks=1"])
    model, _ = apply_strategy(load_base(cfg.model, cfg.quant, tiny_path), cfg.strategy)
    last = len(model.model.layers) - 1
    for name, param in model.named_parameters():
        expect = name.startswith(f"model.layers.{last}.") or name.startswith("model.norm.")
        assert param.requires_grad == expect, name


def test_4bit_lora_gradients_survive_an_eval_forward(tiny_path):
    """bitsandbytes repacks 4-bit weights after a no-grad forward on CPU; without ftlab's guard the LoRA gradients
    are then silently wrong. Gradients before and after an evaluation-style forward must agree."""
    from peft import get_peft_model

    cfg = compose_cfg(["strategy=lora", "quant=4bit", "strategy.peft.lora_dropout=0.0"])
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    torch.manual_seed(0)
    model = get_peft_model(load_base(cfg.model, cfg.quant, tiny_path), peft_config(cfg.strategy))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # non-zero B so that A's gradient is not trivially zero
            torch.nn.init.normal_(param, std=0.02)
    text = ["At Velmora Consulting, Senior Consultants have a 90 days notice period."]
    batch = tokenizer(text, return_tensors="pt").to(model.device)

    def lora_grads():
        model.train()
        model.zero_grad()
        model(**batch, labels=batch["input_ids"]).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    first = lora_grads()
    model.eval()
    with torch.no_grad():
        model(**batch)
        model.generate(**batch, max_new_tokens=2, do_sample=False)
    second = lora_grads()
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("optimizer", ["adamw", "adamw_8bit", "adafactor", "sgd"])
def test_every_optimizer_trains(optimizer, tiny_path, tmp_path):
    from trl import SFTTrainer

    cfg = compose_cfg(
        [
            f"optimizer={optimizer}",
            "strategy=full",
            "train.max_steps=2",
            "train.batch_size=4",
            "data.max_train_examples=8",
        ]
    )
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    model = load_base(cfg.model, cfg.quant, tiny_path)
    before = snapshot(model)
    data = train_dataset(cfg.data, cfg.objective.data_format, cfg.data.system_prompt)
    trainer = SFTTrainer(
        model=model,
        args=trainer_args(cfg, tmp_path, "none", has_eval_data=False),
        train_dataset=data,
        processing_class=tokenizer,
    )
    trainer.train()
    fused = {"adamw_torch": "adamw_torch_fused"}  # ftlab fuses torch's AdamW on every device
    assert trainer.args.optim.value == fused.get(cfg.optimizer.optim, cfg.optimizer.optim)
    changed = [n for n, p in snapshot(trainer.model).items() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)


@pytest.mark.parametrize("placement,per_block", [("pfeiffer", 1), ("houlsby", 2)])
def test_bottleneck_adapters_start_as_identity_and_train(placement, per_block, tiny_path):
    from ftlab.model import adapter

    cfg = compose_cfg(["strategy=adapter", f"strategy.adapter.placement={placement}"])
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    base = load_base(cfg.model, cfg.quant, tiny_path)
    batch = tokenizer(["Notice periods vary by grade."], return_tensors="pt").to(base.device)
    expected = base(**batch).logits.detach()
    model, _ = apply_strategy(base, cfg.strategy)
    wrapped = [m for m in model.modules() if isinstance(m, adapter.WithAdapter)]
    assert len(wrapped) == per_block * len(model.model.layers)
    torch.testing.assert_close(model(**batch).logits, expected)  # zero-initialised up-projection
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    assert all(".adapter." in n for n, p in model.named_parameters() if p.requires_grad)


def test_parameter_count_is_the_same_quantized_or_not(tiny_path):
    from ftlab.model.strategy import count_params

    totals = {
        q: count_params(load_base(compose_cfg([f"quant={q}"]).model, compose_cfg([f"quant={q}"]).quant, tiny_path))[
            "total"
        ]
        for q in QUANTS
    }
    assert totals["4bit"] == totals["none"] == totals["8bit"], totals


LOHA = """# python -m ftlab strategy=loha   (a user's own PEFT method: low-rank Hadamard product updates)
defaults:
  - /strategy@_here_
  - _self_

name: loha
kind: peft
lr: 3e-3
trains_base: false
float_base: false
mergeable: true
virtual_tokens: false
reward_head: true
allows_gradient_checkpointing: true
peft:
  _target_: peft.LoHaConfig
  _convert_: all
  task_type: CAUSAL_LM
  r: 8
  alpha: 16
  target_modules: ${model.target_modules}
"""


def test_a_new_peft_method_is_one_yaml_file(tiny_path, tmp_path):
    """LoHa, which ftlab's code never names: a strategy file with its PEFT class and lora's facts, found on Hydra's
    search path, gets lora's rules (refused under fixed sparsity masks; QLoRA, QAT and PTQ allowed), and it trains,
    saves, reloads onto its base and merges into the weights like lora."""
    from peft import get_peft_model

    from ftlab.model.strategy import kind, merged

    (tmp_path / "conf" / "strategy").mkdir(parents=True)
    (tmp_path / "conf" / "strategy" / "loha.yaml").write_text(LOHA)

    def loha(*overrides):
        return compose_cfg([f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "strategy=loha", *overrides])

    assert "a dense loha update would fill the zeros" in incompatibility(loha("quant=sparse_2of4"))
    for overrides in (["quant=4bit"], ["quant=qat_int8_int4"], ["quant=ptq_int8_int4"], ["objective=reward"]):
        assert incompatibility(loha(*overrides)) is None, overrides
    # The facts decide, not the name: the same file declaring mergeable: false is refused where lora is not.
    assert "cannot be folded" in incompatibility(loha("quant=qat_int8_int4", "strategy.mergeable=false"))

    cfg = loha("strategy.peft.r=4")
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    model, config = apply_strategy(load_base(cfg.model, cfg.quant, tiny_path), cfg.strategy)
    assert type(config).__name__ == "LoHaConfig"
    model = get_peft_model(model, config)
    torch.manual_seed(0)
    for param in (p for p in model.parameters() if p.requires_grad):  # a trained-looking, non-zero update
        torch.nn.init.normal_(param, std=0.05)
    ids = tokenizer(["What is the notice period for a Senior Consultant?"], return_tensors="pt")
    with torch.no_grad():
        tuned = model(**ids).logits
        kind(cfg.strategy).save(model, tmp_path / "saved")
        reloaded = kind(cfg.strategy).attach(load_base(cfg.model, cfg.quant, tiny_path), tmp_path / "saved")
        torch.testing.assert_close(reloaded(**ids).logits, tuned)
        assert not torch.equal(load_base(cfg.model, cfg.quant, tiny_path)(**ids).logits, tuned)  # it changed the model
        torch.testing.assert_close(merged(model)(**ids).logits, tuned, rtol=1e-4, atol=1e-4)
