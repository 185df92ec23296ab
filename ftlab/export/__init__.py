"""Exports of a finished run for other runtimes: GGUF for llama.cpp and Ollama (python -m ftlab.export)."""
