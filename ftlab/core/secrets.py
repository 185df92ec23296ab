"""Secrets (API keys, tokens, passwords): the one policy. A run registers the secret values of its config once;
every file ftlab writes goes through core/files.write_atomic, which hides them and those of secret-named environment
variables. What that writer cannot see hides them itself, each with its reason: Hydra's own files (the run's
lifecycle rewrites them through the writer), the launchers' log lines (HideSecretsInLogs below), the config handed to
W&B (redact), the Trainer's pickled arguments in checkpoints (train/guards.py)."""

import logging
import os
import re

from hydra.experimental.callback import Callback

# api_key, hf_token, secret, db_password... but not max_new_tokens or target_modules.
SECRET_KEY = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd)$", re.IGNORECASE)
# WANDB_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, PGPASSWORD, ...: their values are hidden wherever ftlab writes.
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
_KNOWN: set = set()  # the secret values of this process's run(s), registered once each config is known


def secret_values(plain_cfg: dict) -> set:
    """The strings to hide in anything written: values under secret-named config keys (a hub_token passed to the
    trainer, say) and the values of secret-named environment variables."""
    found = {v for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= 8}

    def walk(obj):
        for key, value in obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ():
            if SECRET_KEY.search(str(key)) and isinstance(value, (str, int)) and len(str(value)) >= 4:
                found.add(str(value))
            else:
                walk(value)

    walk(plain_cfg)
    return found


def register_secrets(values) -> None:
    _KNOWN.update(values)


def hide_secrets(text: str) -> str:
    """Registered values and secret environment variables' values become ***."""
    for secret in sorted(_KNOWN | secret_values({}), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def redact(obj):
    """A copy of a plain config with every value under a key/token/secret/password name hidden as the string '***',
    and the hidden values inside other strings (a command line in the environment record) too. For config.yaml it
    keeps the YAML loadable (a bare *** would be a YAML alias); for W&B, which writes its own files, it is the
    hiding."""
    if isinstance(obj, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) and v else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return hide_secrets(obj) if isinstance(obj, str) else obj


# Where Hydra's launchers and sweepers print each job's overrides, the values typed on the command line included.
LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra._internal.core_plugins.basic_sweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
    "hydra_plugins.hydra_optuna_sweeper._impl",
)


class HideSecretsInLogs(logging.Filter, Callback):
    """A Hydra callback (conf/config.yaml: hydra.callbacks): the launchers print each job's overrides ("#0 :
    key=value ...") before any run has registered its secrets, and not through ftlab's writer: the secret-named
    overrides typed on the command line are registered here, and the launchers' log lines get them hidden."""

    def on_multirun_start(self, config, **kwargs):
        typed = [o.split("=", 1) for o in config.hydra.overrides.task if "=" in o]
        register_secrets(secret_values({k.lstrip("+~").rsplit(".", 1)[-1]: v for k, v in typed}))
        for name in LAUNCHER_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def filter(self, record):
        record.msg, record.args = hide_secrets(record.getMessage()), ()
        return True
