"""Every value has one home in conf/ (the schema holds types only), and every YAML's first command composes: the
checks behind "every YAML opens with the command that uses it". Composed in-process with Hydra's compose API, as
`python -m ftlab ... --cfg job` would, without starting a process per command."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING, OmegaConf

from ftlab.config import schema
from ftlab.core.files import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"
GROUPS = ["model", "strategy", "objective", "data", "quant", "optimizer", "dist"]
# Every YAML in conf/: config.yaml, the shared file of each group, the options, experiments and sweeps (conf/experiment
# and conf/sweep link to experiments/ and sweeps/), Hydra launchers.
YAMLS = sorted([*CONF.glob("*.yaml"), *CONF.glob("*/*.yaml"), *CONF.glob("hydra/launcher/*.yaml")])
COMMAND = re.compile(r"^# .*?-m ftlab\b(.*)$")
PARSER = OverridesParser.create()


def test_the_schema_holds_types_only():
    """A default in the schema would be a second home for a value, one that a reader of conf/ never sees."""
    for cls in (v for v in vars(schema).values() if dataclasses.is_dataclass(v)):
        for field in dataclasses.fields(cls):
            has_default = field.default is not MISSING or field.default_factory is not dataclasses.MISSING
            assert not has_default, f"{cls.__name__}.{field.name}"


def chain(option: Path) -> list[Path]:
    """The files an option is made of: what its defaults list includes (conf/<group>.yaml), then itself."""
    included = [
        CONF / f"{entry.removeprefix('/').removesuffix('@_here_')}.yaml"
        for entry in OmegaConf.load(option).get("defaults", [])
        if entry != "_self_"
    ]
    return [*included, option]


def placeholder(value) -> bool:
    """A shared file's null (or empty) value for a setting that only some options use: theirs replaces it."""
    return value is None or value == {} or value == []


@pytest.mark.parametrize("group", GROUPS)
def test_every_value_is_set_in_one_place(group):
    """Within each option of a group, a key is set by one file: the shared conf/<group>.yaml or the option's own
    (an option may only fill in a setting the shared file leaves null). That each option then misses no value is
    the header-command test's: it composes every option with throw_on_missing."""
    for option in sorted((CONF / group).glob("*.yaml")):
        seen = {}
        for path in chain(option):
            for key, value in OmegaConf.to_container(OmegaConf.load(path)).items():
                if key == "defaults":
                    continue
                if key in seen:
                    first, earlier = seen[key]
                    assert placeholder(earlier) and not placeholder(value), (
                        f"{group}.{key} is set in {first.name} and again in {path.relative_to(CONF)}"
                    )
                seen[key] = (path, value)


def test_config_yaml_holds_only_what_no_group_sets():
    top = set(OmegaConf.load(CONF / "config.yaml")) - {"defaults", "hydra"}
    assert top == {
        "seed",
        "metric",
        "run_name",
        "output_dir",
        "resume",
        "overwrite",
        "train",
        "eval",
        "tune",
        "tracking",
        "wandb",
        "log",
    }


def header_command(path: Path) -> list[str]:
    """The overrides of the `... -m ftlab ARGS   (comment)` line a YAML opens with (multirun's -m left out)."""
    found = next((COMMAND.match(line) for line in path.read_text().splitlines() if COMMAND.match(line)), None)
    assert found, f"{path.relative_to(CONF)}: no `# python -m ftlab ...` command in its header"
    return [arg for arg in shlex.split(found.group(1).split("  ")[0]) if arg not in ("-m", "--multirun")]


def sweep_points(overrides: list, sweeper_params: dict) -> list[list[str]]:
    """The runs a command starts: one, or for a multirun every value of each swept key (its comma-separated values
    on the command line, the sweep file's sweeper params; an Optuna interval: its lower end) with the other keys at
    their first value. Every value composes; the grid's product would only repeat them."""
    axes = []
    for override in [*overrides, *PARSER.parse_overrides([f"{k}={v}" for k, v in sweeper_params.items()])]:
        key = override.get_key_element()
        if not override.is_sweep_override():
            axes.append([override.input_line])
        elif override.is_interval_sweep():
            axes.append([f"{key}={override.value().start}"])
        else:
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    first = [axis[0] for axis in axes]
    points = {tuple(first)} | {
        tuple(first[:i] + [value] + first[i + 1 :]) for i, axis in enumerate(axes) for value in axis[1:]
    }
    return [list(point) for point in sorted(points)]


def sweeper_params(overrides: list) -> dict:
    """What the sweep file a command names (sweep=NAME) gives Hydra's sweeper to vary."""
    names = [o.value() for o in overrides if o.get_key_element() == "sweep"]
    return {
        k: v
        for name in names
        for k, v in (OmegaConf.load(CONF / "sweep" / f"{name}.yaml").hydra.sweeper.params or {}).items()
    }


def test_every_yaml_header_command_composes():
    """The command each YAML opens with gives a complete config, no value missing (`python -m ftlab ARGS --cfg job`),
    for every run of a multirun; an option's command selects that option. Placeholders such as SFT_RUN_DIR stay
    strings, as Hydra composes them."""
    failures = []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for path in YAMLS:
            args = header_command(path)
            try:
                overrides = PARSER.parse_overrides(args)
                for point in sweep_points(overrides, sweeper_params(overrides)):
                    job = compose("config", overrides=point)
                    OmegaConf.to_container(job, resolve=True, throw_on_missing=True)
                    if path.parent.name in GROUPS:
                        assert job[path.parent.name].name == path.stem, "its command does not select it"
            except Exception as err:  # every failing command is listed, not only the first
                failures.append(f"{path.relative_to(CONF)}: {' '.join(args)}: {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)
    assert len(YAMLS) >= 60
