"""Where TRL's own path is slower than it needs to be on ftlab's hardware: packed rows kept as rows, and on CPUs an
LM head that scores only the positions that have a label."""

_ORIGINAL = {}


def labelled_logits_only(on: bool) -> None:
    """TRL's fused LM head projects to the vocabulary only the positions with a label (the answer tokens) on CUDA and
    XPU; on other devices it projects every position (prompt and padding too) so that Neuron's compiler sees one
    shape. Nothing is compiled on a CPU, so there the same compact path computes the same loss with less work: 1.5x
    tokens/s and less memory on the tiny model (benchmarks/README.md). The choice is TRL's private module-level device
    test, set for the process (a run is one process): a TRL without it stops the run here rather than quietly taking
    its slower path."""
    import trl
    import trl.trainer.utils as trl_utils

    if "device_test" not in _ORIGINAL:
        if not on:
            return  # nothing patched yet, nothing to restore
        try:
            _ORIGINAL["device_test"] = trl_utils._use_triton
        except AttributeError:
            raise ValueError(
                f"train.labelled_logits_only: TRL {trl.__version__} has no trl.trainer.utils._use_triton to switch "
                "its LM head to labelled positions on CPUs; set train.labelled_logits_only=false"
            ) from None
    device_test = _ORIGINAL["device_test"]

    def compact_on_cpu(device) -> bool:
        return device.type == "cpu" or device_test(device)

    trl_utils._use_triton = compact_on_cpu if on else device_test


def lm_head_positions(device) -> str:
    """Which positions TRL's fused LM head scores on this device now: results.json's performance record."""
    import trl.trainer.utils as trl_utils

    return "labelled" if trl_utils._use_triton(device) else "all"


def packed_rows_collator(pad_token_id: int):
    """Batches of packed rows as rows: position ids restart at each document and, with no attention mask,
    transformers masks every row block-diagonally, so no document attends to, or predicts from, another."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class PackedRows(DataCollatorForLanguageModeling):
        def torch_call(self, examples):
            batch = super().torch_call(examples)
            del batch["attention_mask"]  # the position ids mark the documents
            batch["labels"][batch["position_ids"] == 0] = -100  # a first token is not predicted from the last one
            return batch

    return PackedRows(pad_token_id=pad_token_id, return_position_ids=True)
