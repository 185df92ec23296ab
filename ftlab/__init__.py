"""ftlab: Hydra-configured fine-tuning experiments for large language models."""

__version__ = "0.1.0"
