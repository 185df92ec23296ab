"""`python -m ftlab.chat RUN_DIR`: ask a finished run (or its merged export) questions, in a terminal or from a file."""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ftlab.core.files import write_atomic

# A merged export (python -m ftlab.merge) that still finds its run takes the run's settings; else these.
FALLBACK_MAX_NEW_TOKENS = 128


class ChatError(ValueError):
    """Bad input for a chat: the message says which path or line and what was expected."""


@dataclass
class Settings:
    """How answers are generated. The defaults of a run are its evaluation's: greedy, eval.max_new_tokens and
    data.system_prompt through the same chat template, so a held-out answer equals the run's answers.json."""

    system_prompt: str | None
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    batch_size: int = 32  # eval.batch_size: --prompts answers in the evaluation's batches

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def check_chat_dir(path: Path) -> str:
    """ "run" or "export", checked before anything heavy loads; a ChatError says what is wrong."""
    from ftlab.model.source import is_run_dir, run_config

    if not path.is_dir():
        raise ChatError(f"{path}: no such directory")
    if is_run_dir(path):
        if run_config(path).objective.trainer == "reward":
            raise ChatError(f"{path}: a reward model scores answers, it does not write them (objective=reward)")
        return "run"
    if (path / "ftlab_merge.json").is_file():
        return "export"
    raise ChatError(
        f"{path}: not an ftlab run directory (expected config.yaml and model/) nor a merged export (ftlab_merge.json)"
    )


def load_chat_model(path) -> tuple:
    """(model, tokenizer, Settings, run config or None) of a run directory or of a merged export."""
    path = Path(path)
    if check_chat_dir(path) == "export":
        return _load_export(path)
    from ftlab.model.source import load_run

    model, tokenizer, cfg = load_run(path)
    return model, tokenizer, settings_of(cfg), cfg


def settings_of(cfg) -> Settings:
    return Settings(cfg.data.system_prompt, cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size)


def _load_export(path: Path) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftlab.model.source import is_run_dir, run_config

    info = json.loads((path / "ftlab_merge.json").read_text())
    if info.get("head") == "reward":
        raise ChatError(f"{path}: a merged reward model scores answers, it does not write them")
    run = Path(info.get("run", ""))
    cfg = run_config(run) if info.get("run") and is_run_dir(run) else None
    # Code in an export is ftlab's own (bottleneck-adapter modules), written beside the weights by ftlab.merge.
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=info["ftlab_code"], use_safetensors=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg is None:
        print(
            f"note: {path}: its run ({info.get('run')}) is gone: no system prompt, {FALLBACK_MAX_NEW_TOKENS} new "
            f"tokens (--system-prompt, --max-new-tokens set them)",
            file=sys.stderr,
        )
        return model, tokenizer, Settings(None, FALLBACK_MAX_NEW_TOKENS), None
    return model, tokenizer, settings_of(cfg), cfg


def answer(model, tokenizer, question: str, settings: Settings, streamer=None) -> str:
    """One answer, built exactly as ftlab.evaluate.generate_answers builds its prompts and stops (the chat template
    with the generation prompt, no extra special tokens, the tokenizer's pad and end-of-sequence tokens)."""
    import torch

    from ftlab.data.load import chat_prompt

    prompt = tokenizer.apply_chat_template(
        chat_prompt(question, settings.system_prompt), add_generation_prompt=True, tokenize=False
    )
    enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False).to(model.device)
    sampling = {} if settings.greedy else {"temperature": settings.temperature, "top_p": settings.top_p}
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=settings.max_new_tokens,
            do_sample=not settings.greedy,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            streamer=streamer,
            **sampling,
        )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def answer_all(model, tokenizer, questions: list, settings: Settings) -> list:
    """Greedy answers come from the evaluation's own function in its batches; sampled ones one by one."""
    if settings.greedy:
        from ftlab.eval.answers import generate_answers

        return generate_answers(
            model, tokenizer, questions, settings.system_prompt, settings.max_new_tokens, settings.batch_size
        )
    return [answer(model, tokenizer, q, settings) for q in questions]


def read_prompts(path: Path) -> list:
    """[{question, ...}]: JSONL rows with a question or prompt field (other fields kept), else one prompt a line."""
    if not path.is_file():
        raise ChatError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return [{"question": line.strip()} for line in lines if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ChatError(f"{path}:{number}: not JSON ({err.msg})") from None
        text = row.get("question", row.get("prompt")) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ChatError(f"{path}:{number}: expected a 'question' or 'prompt' field with text")
        rows.append({**row, "question": text})
    if not rows:
        raise ChatError(f"{path}: no prompts")
    return rows


def interactive(model, tokenizer, settings: Settings) -> None:
    """A prompt per line; the answer streams token by token. An empty line, 'exit' or end of input stops."""
    from transformers import TextStreamer

    tty = sys.stdin.isatty()
    if tty:
        print("Ask a question (empty line or Ctrl-D to stop).", flush=True)
    while True:
        try:
            question = input("> " if tty else "").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if question in ("", "exit", "quit"):
            break
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)  # prints as tokens come
        answer(model, tokenizer, question, settings, streamer)


def quiet_libraries() -> None:
    """A chat shows answers: no weight-loading progress bars, deprecation notes or CUDA-kernel notes on a CPU."""
    import logging
    import warnings

    for noisy in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):  # before an import can log
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m ftlab.chat", description=__doc__.split(": ", 1)[1])
    p.add_argument("run_dir", type=Path, help="a finished run directory, or a merged export of one")
    p.add_argument("--prompts", type=Path, help="file of prompts: one a line, or JSONL with a question/prompt field")
    p.add_argument("--out", type=Path, help="JSONL of answers for --prompts (default: printed)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy, as the run's evaluation")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling, with --temperature above 0")
    p.add_argument("--max-new-tokens", type=int, help="default: the run's eval.max_new_tokens")
    p.add_argument("--system-prompt", help="default: the run's data.system_prompt ('' for none)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.out and not args.prompts:
        raise SystemExit("error: --out needs --prompts FILE")
    if args.temperature < 0 or not 0 < args.top_p <= 1 or (args.max_new_tokens is not None and args.max_new_tokens < 1):
        raise SystemExit("error: expected --temperature >= 0, 0 < --top-p <= 1 and --max-new-tokens >= 1")
    try:
        check_chat_dir(args.run_dir)  # bad input fails at once, before the slow imports
        prompts = read_prompts(args.prompts) if args.prompts else None
        quiet_libraries()
        model, tokenizer, settings, _ = load_chat_model(args.run_dir)
    except (ValueError, OSError) as err:  # ChatError, and bad data or model files met while loading
        raise SystemExit(f"error: {err}") from None
    settings.temperature, settings.top_p = args.temperature, args.top_p
    if args.max_new_tokens is not None:
        settings.max_new_tokens = args.max_new_tokens
    if args.system_prompt is not None:
        settings.system_prompt = args.system_prompt or None
    from transformers import set_seed

    set_seed(args.seed)
    if prompts is None:
        interactive(model, tokenizer, settings)
        return
    answers = answer_all(model, tokenizer, [p["question"] for p in prompts], settings)
    lines = [json.dumps({**p, "answer": a}, ensure_ascii=False) + "\n" for p, a in zip(prompts, answers)]
    if args.out:
        write_atomic(args.out, "".join(lines))
        print(f"{len(lines)} answers: {args.out}")
    else:
        sys.stdout.writelines(lines)


if __name__ == "__main__":
    main()
