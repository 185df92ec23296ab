"""A Hugging Face model folder (or a LoRA adapter) as a GGUF file, by llama.cpp's own converters, taken from the
llama-cpp-python release that loads the result; quantization below 8 bits by llama.cpp's quantizer (its C API)."""

import contextlib
import importlib.metadata
import json
import logging
import os
import runpy
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ftlab.core.files import atomic_dir, cache_root

# What llama.cpp's converters write themselves (convert_hf_to_gguf.py --outtype), and what its quantizer makes from
# their f16 file: the k-quants need rows of 256 weights and fall back to other types on narrower layers.
CONVERTED = ("f32", "f16", "bf16", "q8_0")
QUANTIZED = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
QUANTIZED |= {"q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}
OUTTYPES = (*CONVERTED, *QUANTIZED)
CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py")

# llama.cpp knows a BPE tokenizer's pre-tokenizer (how text is split before merging) by hashing the ids it gives a
# probe text, so a vocabulary it has never seen (the tiny model's, any tokenizer trained for a project) is refused
# even when its split is one llama.cpp implements. tokenizer.json declares the split: those llama.cpp implements
# are named here, and the converter is told the name when its hash list has none.
PRE_TOKENIZERS = {
    "gpt-2": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},  # GPT-2's byte-level regex split
}


def converter_source() -> Path:
    """llama.cpp's converter scripts: LLAMA_CPP_DIR (a llama.cpp checkout), else those of the installed
    llama-cpp-python's own source release (so the file format matches the runtime that loads it), fetched once
    with pip into ftlab's cache."""
    if os.environ.get("LLAMA_CPP_DIR"):
        source = Path(os.environ["LLAMA_CPP_DIR"]).expanduser()
        if not (source / "convert_hf_to_gguf.py").is_file():
            raise FileNotFoundError(f"LLAMA_CPP_DIR={source}: no convert_hf_to_gguf.py there")
        return source
    try:
        version = llama_cpp_version()
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            "GGUF export needs llama-cpp-python: pip install -e '.[gguf]' (builds llama.cpp, about 4 minutes)"
        ) from None
    target = cache_root() / f"llama.cpp-converters-{version}"
    if not (target / "convert_hf_to_gguf.py").is_file():
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{target}.lock"):
            if not (target / "convert_hf_to_gguf.py").is_file():
                with atomic_dir(target) as folder:
                    _fetch_converters(version, folder)
    return target


def llama_cpp_version() -> str:
    return importlib.metadata.version("llama-cpp-python")


def _fetch_converters(version: str, folder: Path) -> None:
    with tempfile.TemporaryDirectory() as download:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        proc = subprocess.run([*cmd, "-d", download, f"llama-cpp-python=={version}"], capture_output=True, text=True)
        if proc.returncode:
            lines = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or ["no output"]
            raise OSError(f"could not fetch llama-cpp-python {version}'s source for its converters: {lines[-1]}")
        (sdist,) = Path(download).glob("*.tar.gz")
        with tarfile.open(sdist) as tar:
            prefix = f"{tar.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            members = [m for m in members if m.name[len(prefix) :].split("/")[0] in CONVERTER_FILES]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(folder, members=members, filter="data")


@contextlib.contextmanager
def _converters(source: Path, argv: list):
    """llama.cpp's converter modules importable (its own gguf-py first, as its scripts do) with the pre-tokenizers
    above registered, and its scripts' command line set to argv; ftlab's sys.path and argv are restored after."""
    path, saved_argv = list(sys.path), sys.argv
    sys.path[:0] = [str(source), str(source / "gguf-py")]
    sys.argv = argv
    try:
        import conversion.base

        _register_pre_tokenizers(conversion.base.TextModel)
        yield
    finally:
        sys.path[:], sys.argv = path, saved_argv


def _register_pre_tokenizers(text_model) -> None:
    if getattr(text_model.get_vocab_base_pre, "ftlab", False):
        return
    recognised = text_model.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return recognised(self, tokenizer)
        except NotImplementedError:
            name = declared_pre_tokenizer(Path(self.dir_model))
            if name is None:
                raise NotImplementedError(
                    f"{self.dir_model}: llama.cpp does not know this tokenizer's pre-tokenizer (neither by its hash "
                    f"nor as one of {', '.join(PRE_TOKENIZERS)})"
                ) from None
            return name

    get_vocab_base_pre.ftlab = True
    text_model.get_vocab_base_pre = get_vocab_base_pre


def declared_pre_tokenizer(model_dir: Path) -> str | None:
    """llama.cpp's name for the pre-tokenizer tokenizer.json declares, None when it implements none like it."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    declared = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    for name, split in PRE_TOKENIZERS.items():
        if all(declared.get(k) == v for k, v in split.items()):
            return name
    return None


def _run_script(source: Path, script: str, argv: list) -> None:
    """One of llama.cpp's converter scripts, in this process: its errors become exceptions with its last log line."""
    handler = _LastError()
    logging.getLogger().addHandler(handler)
    try:
        with _converters(source, [script, *argv]):
            runpy.run_path(str(source / script), run_name="__main__")
    except SystemExit as stop:
        if stop.code:
            raise RuntimeError(f"llama.cpp's {script} failed: {handler.last or stop.code}") from None
    finally:
        logging.getLogger().removeHandler(handler)


class _LastError(logging.Handler):
    last = ""

    def emit(self, record):
        if record.levelno >= logging.ERROR:
            self.last = record.getMessage()


def convert_model(model_dir: Path, outfile: Path, outtype: str, source: Path, name: str) -> None:
    """A standalone Hugging Face model folder as one GGUF file of outtype (general.name: name)."""
    argv = [str(model_dir), "--model-name", name, "--outtype"]
    if outtype in CONVERTED:
        _run_script(source, "convert_hf_to_gguf.py", [*argv, outtype, "--outfile", str(outfile)])
        return
    with tempfile.TemporaryDirectory(dir=outfile.parent) as scratch:
        f16 = Path(scratch) / "f16.gguf"
        _run_script(source, "convert_hf_to_gguf.py", [*argv, "f16", "--outfile", str(f16)])
        quantize(f16, outfile, outtype)


def quantize(infile: Path, outfile: Path, outtype: str) -> None:
    """llama.cpp's quantizer (what its llama-quantize tool runs), through llama-cpp-python's bindings."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZED[outtype])
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(infile).encode(), str(outfile).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {infile.name} to {outtype}")


def convert_lora(adapter_dir: Path, base_dir: Path, outfile: Path, outtype: str, source: Path) -> None:
    """A PEFT LoRA adapter as a GGUF LoRA, for llama.cpp's --lora and Ollama's ADAPTER, on the base's GGUF."""
    argv = [str(adapter_dir), "--base", str(base_dir), "--outfile", str(outfile), "--outtype", outtype]
    _run_script(source, "convert_lora_to_gguf.py", argv)
