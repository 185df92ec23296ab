"""Performance settings: what auto picks on this machine, and packing that keeps every example to itself."""

import pytest
import torch
import torch.nn.functional as F

from conftest import compose_cfg
from ftlab.train import trainer_args


def test_automatic_performance_settings_on_cpu(tmp_path):
    args = trainer_args(compose_cfg(), tmp_path, "none", has_eval_data=False)
    assert (args.bf16, args.fp16, args.use_cpu) == (False, False, True)  # fp32 on CPU
    assert args.optim == "adamw_torch_fused"  # on CPU too
    assert not args.padding_free and not args.use_liger_kernel and not args.activation_checkpointing
    assert not args.packing and trainer_args(compose_cfg(["objective=domain"]), tmp_path, "none",
                                             has_eval_data=False).packing  # raw text is packed, answers are not
    packed = trainer_args(compose_cfg(["train.packing=true", "train.gradient_checkpointing=true"]), tmp_path,
                          "none", has_eval_data=False)
    assert packed.packing and packed.activation_checkpointing
    with pytest.raises(ValueError, match="train.packing: objective=dpo cannot pack"):
        trainer_args(compose_cfg(["objective=dpo", "train.packing=true"]), tmp_path, "none", has_eval_data=False)


def summed_loss(model, input_ids, labels, **kwargs):
    """Summed next-token loss over the trained tokens (labels not -100), and their count."""
    logits = model(input_ids=input_ids, **kwargs).logits[:, :-1]
    targets = labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss.item(), int((targets != -100).sum())


def test_packed_rows_train_exactly_like_separate_examples(tmp_path):
    """A packed batch (several answers per row, SDPA) gives each answer the loss it has alone: no answer attends to,
    or is predicted from, another; the same rows with plain causal attention would not."""
    from ftlab.data import prepare
    from ftlab.model import load_base, load_tokenizer, model_path
    from ftlab.train import build_trainer

    cfg = compose_cfg(["train.packing=true", "train.batch_size=2", "wandb.mode=disabled"])
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, path)
    train_data, _, _ = prepare(cfg.data, cfg.objective.data_format, cfg.data.system_prompt, tokenizer, cfg.seed)
    model = load_base(cfg.model, cfg.quant, path)
    args = trainer_args(cfg, tmp_path, "none", has_eval_data=False, model=model)
    trainer, _ = build_trainer("sft", model, tokenizer, args, train_data, None, None, cache=False)
    batch = next(iter(trainer.get_train_dataloader()))
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
                labels = batch["labels"][row:row + 1, a:b]
                if (labels != -100).any():
                    loss, n = summed_loss(model, batch["input_ids"][row:row + 1, a:b], labels)
                    separate = [separate[0] + loss, separate[1] + n]
        leaky = summed_loss(model, batch["input_ids"], batch["labels"],
                            attention_mask=torch.ones_like(batch["input_ids"]))
    assert packed[1] == separate[1] > 0
    assert packed[0] == pytest.approx(separate[0], rel=1e-4)
    assert abs(leaky[0] - separate[0]) > 1e-2 * separate[0]  # cross-contamination would show
