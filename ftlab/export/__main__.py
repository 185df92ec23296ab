"""`python -m ftlab.export RUN_DIR OUT [--to gguf] [--outtype f16,q8_0] [--lora]`: a finished run for llama.cpp and
Ollama (GGUF, by llama.cpp's own converters, with a Modelfile), checked against the run's own answers (a
standalone safetensors folder: python -m ftlab.merge).

Full, freeze, merged LoRA/DoRA/IA3 and QAT/PTQ/sparse runs export; --lora writes a LoRA run's adapter alone as a GGUF
LoRA beside its base's GGUF. OUT gets the .gguf files, a Modelfile (for the first outtype) and export.json: what was
done and how many of the run's held-out answers llama.cpp reproduces word for word."""

import argparse
import time
from pathlib import Path

from ftlab.export.gguf import CONVERTED, OUTTYPES
from ftlab.runs.records import finished_results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ftlab.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path, help="a new or empty folder")
    parser.add_argument("--to", choices=["gguf"], default="gguf", help="safetensors: python -m ftlab.merge")
    parser.add_argument("--outtype", default="f16", help=f"one or more of {', '.join(OUTTYPES)}, comma-separated")
    parser.add_argument("--lora", action="store_true", help="a LoRA run's adapter alone (GGUF LoRA) and its base")
    parser.add_argument("--check", type=int, default=None, metavar="N", help="held-out questions to compare (all)")
    args = parser.parse_args(argv)
    outtypes = args.outtype.split(",")
    allowed = CONVERTED if args.lora else OUTTYPES
    for outtype in outtypes:
        if outtype not in allowed:
            raise SystemExit(f"error: --outtype: expected one of {', '.join(allowed)}, got {outtype!r}")
    results = finished_results(args.run_dir, "exported")
    if args.out_dir.exists() and any(args.out_dir.iterdir()):
        raise SystemExit(
            f"error: {args.out_dir}: exists and is not empty (choose a new folder; nothing is overwritten)"
        )
    from ftlab.core.console import quiet_command
    from ftlab.core.files import run_config

    quiet_command()  # torchao's and bitsandbytes' notices, the converter's progress: not for this terminal

    cfg = run_config(args.run_dir)
    if reason := refusal(cfg, args.run_dir, args.lora):
        raise SystemExit(f"error: {args.run_dir}: {reason}")
    try:
        record = export_gguf(args.run_dir, args.out_dir, cfg, outtypes, args.lora, args.check)
    except (ValueError, OSError, RuntimeError, ModuleNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    for f in record["files"]:
        check = f.get("check") or {}
        rate = f"{check['identical_answers']}/{check['questions']} answers as the run's" if check else "not checked"
        print(f"{args.out_dir / f['file']}: {f['bytes'] / 2**20:.1f} MiB, {f['seconds']:.1f} s, {rate}")
    if (args.out_dir / "Modelfile").is_file():
        print(f"Ollama: ollama create {results.get('run_name') or 'ftlab'} -f {args.out_dir / 'Modelfile'}")
    for note in record["notes"]:
        print(f"note: {note}")


def refusal(cfg, run_dir: Path, lora: bool) -> str | None:
    """Why this run cannot be a GGUF (from what its strategy and objective declare and what it saved), None when it
    can."""
    from ftlab.export.hf import lora_adapter

    if cfg.objective.head != "causal_lm":
        return f"objective={cfg.objective.name} trains a {cfg.objective.head} head; GGUF export is for language models"
    if cfg.strategy.virtual_tokens:
        return f"strategy={cfg.strategy.name} adds trained virtual tokens, which a GGUF model has no place for"
    if not cfg.strategy.mergeable:
        return f"strategy={cfg.strategy.name} adds non-linear modules that llama.cpp's model graph does not have"
    if lora and not lora_adapter(run_dir):
        return f"--lora: strategy={cfg.strategy.name} saved no plain LoRA adapter; export it merged (without --lora)"
    return None


def export_gguf(run_dir: Path, out_dir: Path, cfg, outtypes: list, lora: bool, check: int | None) -> dict:
    """The GGUF files, their checks, the Modelfile and export.json, all in out_dir or none of it."""
    import tempfile

    from ftlab.core.files import atomic_dir, write_atomic, write_json
    from ftlab.export import check as checks
    from ftlab.export import gguf, ollama
    from ftlab.export.hf import base_folder, float_folder
    from ftlab.model.load import load_tokenizer

    source = gguf.converter_source()
    tokenizer = load_tokenizer(cfg.model, str(run_dir / "model"))
    recorded = checks.recorded_answers(run_dir, check) if check != 0 else []
    record = {"run": str(run_dir.resolve()), "strategy": cfg.strategy.name, "quant": cfg.quant.name, "files": []}
    with atomic_dir(out_dir, replace=out_dir.exists()) as out, tempfile.TemporaryDirectory() as scratch:
        if lora:
            model_dir, adapter_dir = base_folder(cfg), run_dir / "model"
        else:
            model_dir, adapter_dir = float_folder(run_dir, cfg, Path(scratch) / "hf"), None
        record["notes"] = notes(cfg, lora)
        for outtype in outtypes:
            started = time.perf_counter()
            model_file = out / f"{'base' if lora else 'model'}-{outtype}.gguf"
            gguf.convert_model(Path(model_dir), model_file, outtype, source, cfg.run_name)
            adapter_file = out / f"adapter-{outtype}.gguf" if lora else None
            if adapter_file:
                gguf.convert_lora(adapter_dir, Path(model_dir), adapter_file, outtype, source)
            seconds = time.perf_counter() - started
            prompt = (tokenizer, recorded, cfg.data.system_prompt, cfg.eval.max_new_tokens)
            agreement = checks.agreement(model_file, *prompt, adapter_file) if recorded else None
            record["files"].append(
                {
                    "file": (adapter_file or model_file).name,
                    "outtype": outtype,
                    "bytes": (adapter_file or model_file).stat().st_size,
                    **({"base": model_file.name, "base_bytes": model_file.stat().st_size} if lora else {}),
                    "seconds": seconds,
                    "check": agreement,
                }
            )
        first = record["files"][0]
        context = tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 4096
        gguf_file, adapter = out / first.get("base", first["file"]), out / first["file"] if lora else None
        try:  # a template Ollama cannot take leaves the GGUF usable by llama.cpp, whose file carries the template
            text = ollama.modelfile(gguf_file, tokenizer, cfg.data.system_prompt, context, adapter)
            write_atomic(out / "Modelfile", text)
        except ValueError as err:
            record["notes"].append(f"no Modelfile: {err}")
        record |= {"converter": str(source), "llama_cpp_python": gguf.llama_cpp_version()}
        write_json(out / "export.json", record)
    return record


def notes(cfg, lora: bool) -> list:
    """What the GGUF is not, that the run was."""
    from ftlab.config.rules import CONVERTING

    said = []
    if cfg.quant.method == "bnb":
        said.append(f"the adapter was trained on a {cfg.quant.name} base; the GGUF holds the de-quantized base")
    if cfg.quant.method in CONVERTING:
        said.append(
            f"quant={cfg.quant.name}: the int weights de-quantized to float; llama.cpp computes activations in its "
            "own precision, not the run's int8 activation scheme"
        )
    if lora:
        said.append("--lora: apply adapter-*.gguf to base-*.gguf (llama.cpp --lora, Ollama ADAPTER)")
    return said


if __name__ == "__main__":
    main()
