"""Configuration: defaults < ``.keeptraining.yml`` < CLI flags / action inputs.

Every layer is validated against the JSON Schema shipped beside this module
(``schema.json``, ``additionalProperties: false``). Errors name the key, the bad
value and what was expected. Values given as text (CLI flags, action inputs,
workflow_dispatch inputs) are converted by the schema's type first, so
``--threshold abc`` and ``threshold: abc`` get the same message.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import search_space
from .errors import ConfigError

DEFAULT_FILE = ".keeptraining.yml"

DEFAULTS: dict[str, Any] = {
    "threshold": 0.9,
    "metric": "accuracy",
    "epochs": 10,
    "epoch_step": 10,
    "max_attempts": 10,
    "max_epochs": None,
    "resume": True,
    "code_path": "ml_code",
    "train_command": "python nn.py",
    "backend": None,  # unset: docker; `run` falls back to local when no engine answers
    "dockerfile": "Dockerfile",
    "image": None,
    "base_image": None,
    "memory_limit": None,
    "timeout": 3600.0,
    "state_dir": ".keeptraining",
    "hyperparameters": {},
    "smtp_server": None,
    "smtp_port": None,
    "smtp_security": "starttls",
    "smtp_username": None,
    "mail_from": None,
    "mail_to": [],
    "notify_on": ["reached", "exhausted", "failed"],
    "strategy": "epochs",
    "max_epochs_total": None,
    "search": None,  # strategy: search only; the config file is the one place to write it
}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Config:
    threshold: float
    metric: str
    epochs: int
    epoch_step: int
    max_attempts: int
    max_epochs: int | None
    resume: bool
    code_path: str
    train_command: str
    backend: str | None
    dockerfile: str
    image: str | None
    base_image: str | None
    memory_limit: str | None
    timeout: float
    state_dir: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    smtp_server: str | None = None
    smtp_port: int | None = None
    smtp_security: str = "starttls"
    smtp_username: str | None = None
    mail_from: str | None = None
    mail_to: list[str] = field(default_factory=list)
    notify_on: list[str] = field(default_factory=list)
    strategy: str = "epochs"
    max_epochs_total: int | None = None
    search: dict[str, Any] | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # key -> layer

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("sources")
        return data

    def search_settings(self) -> search_space.SearchSettings:
        """The parsed ``search`` section (resolve() has checked that it parses)."""
        return search_space.parse(self.search, "configuration")


@cache
def schema() -> dict[str, Any]:
    text = resources.files("keeptraining").joinpath("schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _expected(prop: dict[str, Any]) -> str:
    """A short human phrase for what a schema property accepts."""
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"] if v is not None)
    types = prop.get("type", [])
    kinds = [t for t in ([types] if isinstance(types, str) else types) if t != "null"]
    names = {"number": "a number", "integer": "a whole number", "boolean": "true or false",
             "string": "text", "array": "a list", "object": "a mapping"}
    kind = names.get(kinds[0] if kinds else "", "a value")
    bounds = []
    if "exclusiveMinimum" in prop:
        bounds.append(f"> {prop['exclusiveMinimum']}")
    if "minimum" in prop:
        bounds.append(f">= {prop['minimum']}")
    if "maximum" in prop:
        bounds.append(f"<= {prop['maximum']}")
    return kind + (" " + " and ".join(bounds) if bounds else "")


def _message(err: jsonschema.ValidationError, source: str) -> str:
    path = [str(p) for p in err.absolute_path]
    props = schema()["properties"]
    if err.validator == "additionalProperties" and not path:
        instance = err.instance if isinstance(err.instance, dict) else {}
        unknown = sorted(set(instance) - set(props))
        if "smtp_password" in unknown:
            return (f"{source}: smtp_password must not be written in a file. Put the password in a secret "
                    "and pass it as the KT_SMTP_PASSWORD environment variable (or the smtp-password input).")
        return (f"{source}: unknown key(s) {', '.join(unknown)}. "
                f"Known keys: {', '.join(sorted(props))}.")
    key = path[0] if path else "(top level)"
    prop = props.get(key, {})
    where = ".".join(path)
    if key == "threshold" and isinstance(err.instance, (int, float)) and err.instance > 1:
        return (f"{source}: threshold = {err.instance!r} is above 1. Thresholds are fractions: "
                f"write {err.instance / 100:g} for {err.instance:g} %.")
    if len(path) > 1 or not prop:
        return f"{source}: {where} = {err.instance!r}: {err.message}"
    return f"{source}: {where} = {err.instance!r} is not valid; expected {_expected(prop)}."


def validate(data: Any, source: str) -> None:
    """Raise ConfigError naming the key, value and expectation of the first problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the configuration must be a mapping of keys to values, got {type(data).__name__}.",
            hint="Write it as `threshold: 0.9` lines, one key per line.",
        )
    for key, value in data.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: {key} = {value!r} is not a finite number.")
    if data.get("search") is not None:  # its own checks first: they name the exact problem
        search_space.parse(data["search"], source)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        raise ConfigError(_message(errors[0], source))


def load_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML config file, validated; an empty mapping if the file is empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}.") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from exc
    if data is None:
        return {}
    validate(data, str(path))
    return dict(data)


def coerce(key: str, raw: str, source: str = "input") -> Any:
    """Turn a text value (CLI flag, action input) into the type the schema wants."""
    prop = schema()["properties"].get(key)
    if prop is None:
        raise ConfigError(f"{source}: unknown setting {key}.")
    types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    text = raw.strip()
    if text == "" and "null" in types:
        return None
    try:
        if "boolean" in types:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if "integer" in types:
            return int(text)
        if "number" in types:
            value = float(text)
            return int(value) if value.is_integer() and "e" not in text.lower() and "." not in text else value
        if "array" in types:
            return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{source}: {key} = {raw!r} is not valid; expected {_expected(prop)}."
        ) from None
    return text


def resolve(overrides: dict[str, Any] | None = None, config_file: Path | None = None,
            *, file_required: bool = False, source: str = "command line") -> Config:
    """Merge defaults, the config file (if any) and overrides into a Config."""
    merged = dict(DEFAULTS)
    sources = dict.fromkeys(DEFAULTS, "default")
    if config_file is not None and (file_required or config_file.exists()):
        for key, value in load_file(config_file).items():
            merged[key] = value
            sources[key] = str(config_file)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    validate(given, source)
    merged.update(given)
    sources.update(dict.fromkeys(given, source))
    validate(merged, "effective configuration")
    _check_strategy(merged)
    return Config(**merged, sources=sources)


def _check_strategy(merged: dict[str, Any]) -> None:
    """What no single key can say wrong: a search without a space, a value set twice."""
    if merged["strategy"] != "search":
        return
    if merged["search"] is None:
        raise ConfigError("strategy: search needs a search space, and the configuration has no `search` "
                          "section.", hint="Add to .keeptraining.yml: search: {space: {learning_rate: "
                                           "{type: float, low: 0.0001, high: 0.1, log: true}}}")
    fixed = {name.upper() for name in merged["hyperparameters"]}
    both = sorted(name for name in merged["search"]["space"] if name.upper() in fixed)
    if both:
        raise ConfigError(f"{', '.join(both)} is both in hyperparameters (a fixed value) and in "
                          "search.space (searched).", hint="Remove it from one of the two.")
