"""Performance settings: what auto picks on this machine, and packing that keeps every example to itself."""

import pytest
import torch
import torch.nn.functional as F
from helpers import compose_cfg

from ftlab.train.trainer import trainer_args


def test_automatic_performance_settings_on_cpu(tmp_path):
    args = trainer_args(compose_cfg(), tmp_path, "none", has_eval_data=False)
    assert (args.bf16, args.fp16, args.use_cpu) == (False, False, True)  # fp32 on CPU
    assert args.optim == "adamw_torch_fused"  # on CPU too
    assert not args.padding_free and not args.use_liger_kernel and not args.activation_checkpointing
    from ftlab.train.speedups import lm_head_positions

    assert lm_head_positions(torch.device("cpu")) == "labelled"  # trainer_args set it for CPUs (TRL: "all")
    assert (
        not args.packing
        and trainer_args(compose_cfg(["objective=domain"]), tmp_path, "none", has_eval_data=False).packing
    )  # raw text is packed, answers are not
    packed = trainer_args(
        compose_cfg(["train.packing=true", "train.gradient_checkpointing=true"]), tmp_path, "none", has_eval_data=False
    )
    assert packed.packing and packed.activation_checkpointing
    with pytest.raises(ValueError, match="train.packing: objective=dpo cannot pack"):
        trainer_args(compose_cfg(["objective=dpo", "train.packing=true"]), tmp_path, "none", has_eval_data=False)


def test_labelled_logits_only_fails_loudly_without_trls_device_test(monkeypatch):
    """The CPU LM-head switch patches a private TRL function: a TRL without it stops the run with the way out, rather
    than training on TRL's slower path while the config says otherwise."""
    import trl
    import trl.trainer.utils as trl_utils

    from ftlab.train import speedups

    monkeypatch.setattr(speedups, "_ORIGINAL", {})  # as in a fresh process: nothing patched yet
    monkeypatch.delattr(trl_utils, "_use_triton")
    with pytest.raises(
        ValueError,
        match=rf"TRL {trl.__version__} has no trl.trainer.utils._use_triton .*; set "
        r"train.labelled_logits_only=false$",
    ):
        speedups.labelled_logits_only(True)
    speedups.labelled_logits_only(False)  # the way out: TRL's own path, untouched


def summed_loss(model, input_ids, labels, **kwargs):
    """Summed next-token loss over the trained tokens (labels not -100), and their count."""
    logits = model(input_ids=input_ids, **kwargs).logits[:, :-1]
    targets = labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return loss.item(), int((targets != -100).sum())


def sft_trainer_and_batch(overrides, tmp_path):
    """The tiny model, ftlab's SFT trainer as the run script builds it, and its first training batch."""
    from ftlab.data.load import prepare
    from ftlab.model.load import load_base, load_tokenizer
    from ftlab.model.source import model_path
    from ftlab.train.trainer import build_trainer

    cfg = compose_cfg([*overrides, "wandb.mode=disabled"])
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, path)
    train_data, _, _ = prepare(cfg.data, cfg.objective.data_format, cfg.data.system_prompt, tokenizer, cfg.seed)
    model = load_base(cfg.model, cfg.quant, path)
    args = trainer_args(cfg, tmp_path, "none", has_eval_data=False, model=model)
    trainer, _ = build_trainer("sft", model, tokenizer, args, train_data, None, None, cache=False)
    return model, trainer, next(iter(trainer.get_train_dataloader()))


def test_packed_rows_train_exactly_like_separate_examples(tmp_path):
    """A packed batch (several answers per row, SDPA) gives each answer the loss it has alone: no answer attends to,
    or is predicted from, another; the same rows with plain causal attention would not."""
    model, trainer, batch = sft_trainer_and_batch(["train.packing=true", "train.batch_size=2"], tmp_path)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 2  # rows stay rows
    starts = batch["position_ids"] == 0
    assert int(starts.sum()) >= 6  # several answers in each row

    model.eval()
    with torch.no_grad():
        packed = summed_loss(model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
        separate = [0.0, 0]
        for row in range(2):
            bounds = [*starts[row].nonzero().flatten().tolist(), batch["input_ids"].shape[1]]
            for a, b in zip(bounds, bounds[1:]):
                labels = batch["labels"][row : row + 1, a:b]
                if (labels != -100).any():
                    loss, n = summed_loss(model, batch["input_ids"][row : row + 1, a:b], labels)
                    separate = [separate[0] + loss, separate[1] + n]
        leaky = summed_loss(
            model, batch["input_ids"], batch["labels"], attention_mask=torch.ones_like(batch["input_ids"])
        )
    assert packed[1] == separate[1] > 0
    assert packed[0] == pytest.approx(separate[0], rel=1e-4)
    assert abs(leaky[0] - separate[0]) > 1e-2 * separate[0]  # cross-contamination would show


def test_labelled_logits_only_is_the_same_loss_with_less_work(tmp_path, monkeypatch):
    """On CPUs ftlab takes TRL's compact LM-head path (GPUs' path): the loss and every gradient equal TRL's CPU path,
    while only the answer tokens (labelled positions) go through the vocabulary projection."""
    import trl.trainer.utils as trl_utils

    from ftlab.train.speedups import labelled_logits_only

    projected = []
    chunked = trl_utils._ChunkedLogProbFunction

    class Counting(chunked):
        @staticmethod
        def forward(ctx, hidden, *rest):
            projected.append(hidden.shape[0])
            return chunked.forward(ctx, hidden, *rest)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    model, trainer, batch = sft_trainer_and_batch(["train.batch_size=4"], tmp_path)
    results = {}
    try:
        for on in (False, True):
            labelled_logits_only(on)
            model.zero_grad()
            loss = trainer.compute_loss(model, dict(batch))
            loss.backward()
            results[on] = loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}
    finally:
        labelled_logits_only(True)
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert projected == [batch["input_ids"].numel() - len(batch["input_ids"]), labelled]  # all, then labelled only
    assert labelled < 0.6 * projected[0]  # prompts and padding are most positions of an HR batch
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-6)
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_divergence_guard_finds_one_bad_gradient_entry_in_any_tensor(bad):
    """The guard's single multi-tensor norm must still see one non-finite entry in one of many gradients (a change
    made for speed: benchmarks/README.md), and must let finite gradients through."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from ftlab.train.guards import StopOnDivergence

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4), torch.nn.Linear(4, 2))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    if bad is not None:
        list(model.parameters())[3].grad.view(-1)[1] = bad  # one entry of one tensor (the second layer's bias)
    args, state, control = TrainingArguments("unused", use_cpu=True), TrainerState(), TrainerControl()
    guard = StopOnDivergence()
    if bad is None:
        guard.on_pre_optimizer_step(args, state, control, model=model)
    else:
        with pytest.raises(FloatingPointError, match="a gradient is NaN or infinite at step 1"):
            guard.on_pre_optimizer_step(args, state, control, model=model)
