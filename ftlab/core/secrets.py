"""Secrets (API keys, tokens, passwords): found in a config or the environment, hidden wherever ftlab writes."""

import logging
import os
import re

from hydra.experimental.callback import Callback

# api_key, hf_token, secret, db_password... but not max_new_tokens or target_modules.
SECRET_KEY = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd)$", re.IGNORECASE)
# WANDB_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, PGPASSWORD, ...: their values are hidden wherever ftlab writes.
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)


def redact(obj):
    """A copy of a plain config with every value under a key/token/secret/password name hidden."""
    if isinstance(obj, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) and v else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


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


_KNOWN: set = set()  # the secret values of this process's run(s), registered once the config is known


def register_secrets(values) -> None:
    _KNOWN.update(values)


def hide_secrets(text: str) -> str:
    """The one policy every writer applies (core/files.write_atomic): registered values and secret environment
    variables' values become ***."""
    return hide(text, _KNOWN | secret_values({}))


def hide(text: str, secrets: set) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def hide_in_files(paths, secrets: set) -> None:
    """Hydra saves the composed config and the command-line overrides (.hydra/, multirun.yaml) before ftlab runs:
    rewrite them with the secrets hidden."""
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if any(secret in text for secret in secrets):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(hide(text, secrets), encoding="utf-8")
            os.replace(tmp, path)


# Where Hydra's launchers and sweepers print each job's overrides, the values typed on the command line included.
LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra._internal.core_plugins.basic_sweeper",
                    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
                    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
                    "hydra_plugins.hydra_optuna_sweeper._impl")


class HideSecretsInLogs(logging.Filter, Callback):
    """A Hydra callback (conf/config.yaml: hydra.callbacks): before a sweep launches, the launchers' log lines
    ("#0 : key=value ...") get secret values (secret-named overrides, secret environment variables) hidden."""

    def __init__(self):
        super().__init__()
        self.secrets = set()

    def on_multirun_start(self, config, **kwargs):
        typed = [o.split("=", 1) for o in config.hydra.overrides.task if "=" in o]
        self.secrets = secret_values({k.lstrip("+~").rsplit(".", 1)[-1]: v for k, v in typed})
        for name in LAUNCHER_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def filter(self, record):
        if self.secrets:
            record.msg, record.args = hide(record.getMessage(), self.secrets), ()
        return True
