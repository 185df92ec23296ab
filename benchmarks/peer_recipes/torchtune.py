"""torchtune as its docs run it: `tune run full_finetune_single_device --config config.yaml`, its built-in single-device
full fine-tuning recipe, with a config file written the way its docs say to bring your own model and data:

- model: the `llama3_2` component builder with the tiny model's dimensions from its config.json (a Llama with tied
  embeddings, which `llama3_2` is; `scale_factor: 1` turns Llama 3.1's RoPE frequency scaling off, so its RoPE is the
  plain one the tiny model was trained with) and `FullModelHFCheckpointer` (model_type LLAMA3_2: tied weights) reading
  and writing HF safetensors, converting the attention weights both ways.
- data: `chat_dataset` over a local JSON-lines file, `conversation_style: openai` ({"messages": [system, user,
  assistant]}), `train_on_input: false` (loss on the assistant answer only), no packing.
- tokenizer: torchtune 0.6.1 has tokenizers only for the model families it ships (Llama 3 tiktoken, Qwen2 BPE...);
  its `HuggingFaceBaseTokenizer` reads a tokenizer.json but cannot build chat turns (and wants a BOS token, which this
  model has none of), and its Qwen2 tokenizer splits text with Qwen's own pattern, not this tokenizer's. So, as its
  docs say for a custom component, prepare() writes a small ChatML tokenizer into the work folder (`tune run` puts
  the working folder on the import path): the tokenizer.json through the `tokenizers` library, turns rendered as the
  model's ChatML template renders them, loss on the answer and its <|im_end|> as the template marks them.
  Checked: its tokens and trained positions equal the template's (apply_chat_template with the assistant mask) on
  all 345 rows, and the model as torchtune builds and loads it gives the HF model's logits (within 1e-5).
- hyperparameters: AdamW (torch's), `get_cosine_schedule_with_warmup` with ceil(warmup_ratio x steps) warmup steps,
  `clip_grad_norm`, fp32, device cpu, no activation checkpointing or offloading, no compile.

Deviations it imposes (its recipe hard-codes them; changing them means copying the recipe, `tune cp`):
- `drop_last=True`: 345 rows at batch 16 make 21 steps an epoch (315 in all), not 22 (330): 9 rows an epoch are left
  out, different ones each epoch. The shared token count credits every tool with every row.
- its sampler's shuffle seed is fixed (0); `seed` seeds everything else.
- it saves the model after every epoch (out/epoch_0 ... epoch_14, each with the tokenizer and config files copied
  from the model folder) plus the optimizer state (out/recipe_state/) after all but the last; the final model is
  out/epoch_<epochs-1>. These saves run inside its training loop and count in its time.
- it reports no total training time. Its metric logger is TensorBoard's here (one of its built-in loggers), whose
  events carry the wall time of each logged step; train_seconds() takes the time from the first logged step to the
  last and scales it to all the steps (logging every 10 steps; every step when a run has fewer than 20).
- max_steps > 0 (smoke runs): torchtune has only epochs and max_steps_per_epoch; the run gets enough epochs of at most
  max_steps_per_epoch steps to reach max_steps (exact when max_steps <= 21 or a multiple of it).

Install: torchtune 0.6.1 imports torchao (it is not among its requirements). torchao 0.18 and 0.17 lack names it
imports (`torchao.dtypes.nf4tensor`, `int4_weight_only`), 0.12 fails with torch 2.13 (`torch._inductor.kernel.
flex_attention`); 0.15.0 imports cleanly and is pinned (its compiled kernels do not load with torch 2.13, which only
warns: nothing here uses them). tensorboard for the metric logger. torch 2.13.0 is kept."""

import json
import math
import struct
from pathlib import Path

from benchmarks.peer_recipes import write_messages

NAME = "torchtune"
VERSION = "0.6.1"
INSTALL = ["torchtune==0.6.1", "torchao==0.15.0", "tensorboard==2.21.0"]
ENV = {}

# The custom tokenizer component (a torchtune ModelTokenizer and Transform), written beside the config.
TOKENIZER = '''"""ChatML over a Hugging Face tokenizer.json, as torchtune's ModelTokenizer protocol wants it."""
import json

from tokenizers import Tokenizer
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import ModelTokenizer


class ChatMLTokenizer(ModelTokenizer, Transform):
    def __init__(self, tokenizer_json_path, tokenizer_config_json_path, max_seq_len=None):
        self.tokenizer = Tokenizer.from_file(tokenizer_json_path)
        config = json.load(open(tokenizer_config_json_path))
        self.special_tokens = {t.content: i for i, t in self.tokenizer.get_added_tokens_decoder().items()}
        self.im_start_id = self.special_tokens["<|im_start|>"]
        self.eos_id = self.special_tokens[config["eos_token"]]  # <|im_end|>
        self.pad_id = self.special_tokens[config["pad_token"]]
        self.bos_id = None
        self.max_seq_len = max_seq_len
        self.stop_tokens = [self.eos_id]

    @property
    def vocab_size(self):
        return self.tokenizer.get_vocab_size()

    def encode(self, text, add_bos=False, add_eos=False):
        return self.tokenizer.encode(text, add_special_tokens=False).ids + ([self.eos_id] if add_eos else [])

    def decode(self, token_ids, skip_special_tokens=True):
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def tokenize_messages(self, messages, add_eos=True):
        # <|im_start|>{role}\\n{content}<|im_end|>\\n per turn, as the model's chat template; the template ends each
        # turn with <|im_end|> already, so add_eos adds nothing. Trained: an unmasked message's content and its
        # <|im_end|> (the template's {% generation %} span), never the role header or the newline after the turn.
        tokens, mask = [], []
        for message in messages:
            head = [self.im_start_id] + self.encode(message.role + "\\n")
            body = self.encode("".join(c["content"] for c in message.content if c["type"] == "text")) + [self.eos_id]
            tail = self.encode("\\n")
            tokens += head + body + tail
            mask += [True] * len(head) + [message.masked] * len(body) + [True] * len(tail)
        if self.max_seq_len:
            tokens, mask = tokens[: self.max_seq_len], mask[: self.max_seq_len]
        return tokens, mask

    def __call__(self, sample, inference=False):
        sample["tokens"], sample["mask"] = self.tokenize_messages(sample.pop("messages"))
        return sample
'''


def _steps_per_epoch(job: dict) -> int:
    return job["rows"] // job["batch_size"] // job["grad_accum"]  # drop_last=True in its dataloader


def _plan(job: dict) -> tuple[int, int | None, int]:
    """(epochs, max_steps_per_epoch, total optimizer steps) as torchtune can express the job."""
    per_epoch = _steps_per_epoch(job)
    if job["max_steps"] <= 0:
        epochs = int(job["epochs"])
        return epochs, None, epochs * per_epoch
    epochs = math.ceil(job["max_steps"] / per_epoch)
    per_epoch = math.ceil(job["max_steps"] / epochs)
    return epochs, per_epoch, epochs * per_epoch


def trained_share(job: dict) -> float:
    """The share of the job's tokens it trains on: its recipe drops each epoch's last partial batch (drop_last)."""
    return (job["rows"] - job["rows"] % job["batch_size"]) / job["rows"]


def prepare(work: Path, job: dict) -> list[str]:
    model = Path(job["model"])
    hf = json.loads((model / "config.json").read_text())
    write_messages(job, work / "train.jsonl")
    (work / "chatml_tokenizer.py").write_text(TOKENIZER)
    epochs, max_steps_per_epoch, total = _plan(job)
    rope = hf.get("rope_parameters") or {}
    config = {
        "output_dir": str(work / "out"),
        "model": {
            "_component_": "torchtune.models.llama3_2.llama3_2",
            "vocab_size": hf["vocab_size"],
            "num_layers": hf["num_hidden_layers"],
            "num_heads": hf["num_attention_heads"],
            "num_kv_heads": hf["num_key_value_heads"],
            "embed_dim": hf["hidden_size"],
            "intermediate_dim": hf["intermediate_size"],
            "max_seq_len": hf["max_position_embeddings"],
            "norm_eps": hf["rms_norm_eps"],
            "rope_base": rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
            "scale_factor": 1,  # no Llama 3.1 frequency scaling: plain RoPE
            "tie_word_embeddings": hf.get("tie_word_embeddings", True),
        },
        "tokenizer": {
            "_component_": "chatml_tokenizer.ChatMLTokenizer",
            "tokenizer_json_path": str(model / "tokenizer.json"),
            "tokenizer_config_json_path": str(model / "tokenizer_config.json"),
            "max_seq_len": job["max_length"],
        },
        "checkpointer": {
            "_component_": "torchtune.training.FullModelHFCheckpointer",
            "checkpoint_dir": str(model),
            "checkpoint_files": sorted(p.name for p in model.glob("*.safetensors")),
            "recipe_checkpoint": None,
            "output_dir": str(work / "out"),
            "model_type": "LLAMA3_2",
        },
        "resume_from_checkpoint": False,
        "dataset": {
            "_component_": "torchtune.datasets.chat_dataset",
            "source": "json",
            "data_files": str(work / "train.jsonl"),
            "conversation_column": "messages",
            "conversation_style": "openai",
            "train_on_input": False,
            "packed": False,
            "split": "train",
        },
        "seed": job["seed"],
        "shuffle": True,
        "epochs": epochs,
        "max_steps_per_epoch": max_steps_per_epoch,
        "batch_size": job["batch_size"],
        "gradient_accumulation_steps": job["grad_accum"],
        "optimizer": {"_component_": "torch.optim.AdamW", "lr": job["lr"], "weight_decay": job["weight_decay"]},
        "optimizer_in_bwd": False,
        "lr_scheduler": {
            "_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
            "num_warmup_steps": math.ceil(job["warmup_ratio"] * total),  # as HF's warmup_ratio rounds
        },
        "loss": {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"},
        "clip_grad_norm": job["max_grad_norm"],
        "device": "cpu",
        "dtype": "fp32",
        "enable_activation_checkpointing": False,
        "enable_activation_offloading": False,
        "compile": False,
        "metric_logger": {
            "_component_": "torchtune.training.metric_logging.TensorBoardLogger",
            "log_dir": str(work / "logs"),
            "organize_logs": False,
        },
        "log_every_n_steps": job["logging_steps"] if total >= 2 * job["logging_steps"] else 1,
        "log_peak_memory_stats": False,
        "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False},
    }
    (work / "config.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    return ["tune", "run", "full_finetune_single_device", "--config", str(work / "config.yaml")]


def saved_model(work: Path, job: dict) -> Path:
    return work / "out" / f"epoch_{_plan(job)[0] - 1}"


def _logged_steps(events: Path) -> dict[int, float]:
    """{step: wall time} from a TensorBoard event file: TFRecord frames of Event protos, read without tensorboard
    (field 1 wall_time, a double; field 2 step, a varint; field 5 the summary)."""

    def varint(buf: bytes, i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            byte = buf[i]
            value |= (byte & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if byte < 0x80:
                return value, i

    steps, data, pos = {}, events.read_bytes(), 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        event, pos = data[pos + 12 : pos + 12 + length], pos + 16 + length  # length, its CRC, data, its CRC
        fields, i = {}, 0
        while i < len(event):
            key, i = varint(event, i)
            kind = key & 7
            if kind == 0:
                fields[key >> 3], i = varint(event, i)
            elif kind == 1:
                fields[key >> 3] = struct.unpack_from("<d", event, i)[0]
                i += 8
            elif kind == 2:
                size, i = varint(event, i)
                fields[key >> 3], i = True, i + size
            else:
                break
        if 5 in fields:  # a summary (the logged scalars), not the file-version header
            steps[fields.get(2, 0)] = max(steps.get(fields.get(2, 0), 0.0), fields[1])
    return steps


def train_seconds(work: Path, job: dict) -> float:
    steps: dict[int, float] = {}
    for events in (work / "logs").glob("events.out.tfevents.*"):
        steps.update(_logged_steps(events))
    first, last = min(steps), max(steps)
    if first == last:
        raise ValueError(f"torchtune logged only step {first}: no time span to measure")
    return (steps[last] - steps[first]) * _plan(job)[2] / (last - first)
