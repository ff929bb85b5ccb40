"""Configuration: defaults < ``.keeptraining.yml`` < CLI flags / action inputs.

Every layer is validated against the JSON Schema shipped beside this module
(``schema.json``, ``additionalProperties: false``). Errors name the key, the bad
value (at most about 100 characters of it) and what was expected. Values given
as text (CLI flags, action inputs, workflow_dispatch inputs) are converted by the
schema's type first, so ``--threshold abc`` and ``threshold: abc`` get the same
message.

The file is untrusted text, read defensively: at most 64 KiB of UTF-8, nesting
and alias expansion bounded before anything is built (a 450-byte alias bomb
would otherwise expand to gigabytes), numbers read as YAML 1.2 does
(``1.0e308`` is a number), keys are text, strings hold no control characters
(no NUL), integers are bounded and never written as ``2.0``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from keeptraining.config import search_space
from keeptraining.contract import env as kt_env
from keeptraining.errors import QUOTE_LIMIT, ConfigError, quote

DEFAULT_FILE = ".keeptraining.yml"
MAX_FILE_BYTES = 64 * 1024  # a configuration is a few hundred bytes
MAX_DEPTH = 8  # hyperparameters: {name: value} is depth 2
MAX_NODES = 10_000  # values after expanding every alias
MAX_INT = 10**15  # no setting needs more; bigger ones are typos or attacks
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # Docker refuses a container memory limit below 6 MiB
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_HP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # tab and line feed aside
_MULTILINE_OK = {"train_command"}  # split like a shell: a line break is white space there

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
    "image_registry": None,
    "memory_limit": None,
    "timeout": 3600.0,
    "time_budget": None,  # seconds per run: unset, the job's limit (GitHub) and timeout decide
    "job_timeout_minutes": None,  # GitHub Actions: the job's timeout-minutes (unset: 360)
    "max_slices": 10,  # runs per attempt
    "adapt": "auto",
    "build_timeout": 3600.0,
    "state_dir": ".keeptraining",
    "hyperparameters": {},
    "smtp_server": None,
    "smtp_port": None,
    "smtp_security": "starttls",
    "smtp_username": None,
    "mail_from": None,
    "mail_to": [],
    "notify_on": ["reached", "exhausted", "failed", "stopped", "superseded"],
    "strategy": "epochs",
    "max_epochs_total": None,
    "stop_when_hopeless": True,  # stop a chain whose projection cannot reach the threshold (projection.py)
    "max_runner_minutes": None,
    "price_per_minute": 0.006,  # USD, GitHub-hosted Linux 2-core from 2026-01-01 (cost.py)
    "runner_kind": None,
    "runner_prices": {},
    "search": None,  # strategy: search only; the config file is the one place to write it
    "commit_status": True,
    "tolerance": 0.0,  # a pull request's candidate passes at >= the champion's metric - tolerance
    "network": "default",  # the training container's: see network.py and SECURITY.md
    "cache": True,  # the data cache across attempts: see data_cache.py
    "parallel": 1,  # strategy: search: trials at once (a round's on GitHub; parallel.py)
    "cpus": None,
    "gpus": None,
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
    build_timeout: float
    state_dir: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    smtp_server: str | None = None
    smtp_port: int | None = None
    smtp_security: str = "starttls"
    smtp_username: str | None = None
    mail_from: str | None = None
    mail_to: list[str] = field(default_factory=list)
    notify_on: list[str] = field(default_factory=list)
    commit_status: bool = True
    tolerance: float = 0.0  # the candidate may be this much below the champion and still pass (compare.py)
    adapt: str = "auto"  # the Keras adapter: auto | keras | none
    strategy: str = "epochs"
    max_epochs_total: int | None = None
    search: dict[str, Any] | None = None
    time_budget: float | None = None  # seconds an attempt may train in one run (time_budget.py)
    job_timeout_minutes: int | None = None
    max_slices: int = 10  # runs one attempt may take (slices.py)
    network: str = "default"  # docker: none | default | host | a Docker network's name
    cache: bool = True  # keep what the script downloads from attempt to attempt
    image_registry: str | None = None  # where the chain shares its training image (registry.py)
    parallel: int = 1  # trials trained at once: a round's on GitHub, slots here (strategy: search only)
    cpus: float | None = None  # CPU share of each training (docker) / parallel trial (local)
    gpus: str | None = None  # docker: "all" or a count of GPUs for the training container
    stop_when_hopeless: bool = True  # end a chain whose learning curve cannot reach the threshold
    max_runner_minutes: float | None = None  # runner minutes the chain may use (cost.py)
    price_per_minute: float = 0.006  # USD per minute of a runner label not in cost.KNOWN_PRICES
    runner_kind: str | None = None  # the runs-on label the runner is priced as (unset: guessed)
    runner_prices: dict[str, float] = field(default_factory=dict)  # label -> USD per minute
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
    text = resources.files("keeptraining.config").joinpath("schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _expected(prop: dict[str, Any]) -> str:
    """A short human phrase for what a schema property accepts."""
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"] if v is not None)
    types = prop.get("type", [])
    kinds = [t for t in ([types] if isinstance(types, str) else types) if t != "null"]
    names = {
        "number": "a number",
        "integer": "a whole number",
        "boolean": "true or false",
        "string": "text",
        "array": "a list",
        "object": "a mapping",
    }
    kind = names.get(kinds[0] if kinds else "", "a value")
    bounds = []
    if "exclusiveMinimum" in prop:
        bounds.append(f"> {prop['exclusiveMinimum']}")
    if "minimum" in prop:
        bounds.append(f">= {prop['minimum']}")
    if "maximum" in prop:
        bounds.append(f"<= {prop['maximum']}")
    example = f" like {prop['examples'][0]!r}" if prop.get("examples") else ""
    return kind + (" " + " and ".join(bounds) if bounds else "") + example


#: What a value that fails a key's pattern should look like, in words (the pattern alone says "text").
PATTERN_WORDS = {
    "metric": "a metric's name: letters, digits and _, not starting with a digit (e.g. accuracy)",
    "image_registry": "an image repository such as ghcr.io/owner/name (no tag, no scheme)",
    "memory_limit": "a size such as 4g, 512m or 1073741824 (digits, then k, m or g)",
    "gpus": "all, or a count of GPUs from 1 to 999 (leave gpus unset for none)",
    "network": "none, default, host or the name of a Docker network (letters, digits, _ . -)",
}


def _one_of(err: jsonschema.ValidationError, source: str) -> str | None:
    """A oneOf failure (a search parameter) said by the branch whose ``type`` matches the value."""
    instance = err.instance if isinstance(err.instance, dict) else {}
    for sub in err.context or ():
        branch = sub.schema_path[0] if sub.schema_path else None
        options = err.schema.get("oneOf", []) if isinstance(err.schema, dict) else []
        if not isinstance(branch, int) or branch >= len(options):
            continue
        const = options[branch].get("properties", {}).get("type", {}).get("const")
        if const != instance.get("type") or not sub.relative_path:
            continue
        where = ".".join(str(p) for p in [*err.absolute_path, *sub.relative_path])
        wanted = sub.schema if isinstance(sub.schema, dict) else {}
        required = ("type", "low", "high", "choices")
        leave = " (or leave it out)" if sub.relative_path[-1] not in required else ""
        return f"{source}: {where} = {quote(sub.instance)} is not valid; expected {_expected(wanted)}{leave}."
    return None


def _message(err: jsonschema.ValidationError, source: str) -> str:
    path = [str(p) for p in err.absolute_path]
    props = schema()["properties"]
    if err.validator == "additionalProperties" and not path:
        instance = err.instance if isinstance(err.instance, dict) else {}
        unknown = sorted(set(instance) - set(props))
        if "smtp_password" in unknown:
            return (
                f"{source}: smtp_password must not be written in a file. Put the password in a secret "
                "and pass it as the KT_SMTP_PASSWORD environment variable (or the smtp-password input)."
            )
        named = ", ".join(
            f"{key if len(key) <= QUOTE_LIMIT else quote(key)}{did_you_mean(key, props)}"
            for key in unknown[:10]
        )
        return f"{source}: unknown key(s) {named}. Known keys: {', '.join(sorted(props))}."
    key = path[0] if path else "(top level)"
    prop = props.get(key, {})
    where = ".".join(path)
    if key == "threshold" and isinstance(err.instance, (int, float)) and 1 < err.instance <= 100:
        return (
            f"{source}: threshold = {err.instance!r} is above 1. Thresholds are fractions: "
            f"write {err.instance / 100:g} for {err.instance:g} %."
        )
    if key == "threshold" and isinstance(err.instance, (int, float)) and err.instance > 1:
        return f"{source}: threshold = {err.instance:g} is above 1; a threshold is a fraction in (0, 1]."
    if len(path) > 1 and key in props and "items" in prop:
        return f"{source}: {where} = {quote(err.instance)} is not valid; expected {_expected(prop['items'])}."
    if err.validator == "oneOf":
        said = _one_of(err, source)
        if said is not None:
            return said
    if err.validator in ("maxLength", "maxItems", "maxProperties") and hasattr(err.instance, "__len__"):
        unit = {"maxLength": "characters", "maxItems": "items", "maxProperties": "keys"}[str(err.validator)]
        return (
            f"{source}: {where} = {quote(err.instance)} has {len(err.instance)} {unit}; at most "
            f"{err.validator_value}."
        )
    if len(path) > 1 or not prop:
        return f"{source}: {where} = {quote(err.instance)} is not valid ({err.validator})."
    if err.validator == "pattern" and key in PATTERN_WORDS:
        return f"{source}: {where} = {quote(err.instance)} is not valid; expected {PATTERN_WORDS[key]}."
    hint = (
        did_you_mean(err.instance, prop["enum"]) if "enum" in prop and isinstance(err.instance, str) else ""
    )
    return f"{source}: {where} = {quote(err.instance)} is not valid; expected {_expected(prop)}{hint}."


def did_you_mean(word: object, choices: Any) -> str:
    """`` (did you mean 'keras'?)`` for a close known name, else an empty string."""
    names = [str(c) for c in choices if c is not None]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(where: str, value: Any, source: str) -> None:
    """A scalar the schema can judge: text without control characters, a bounded number."""
    if isinstance(value, str):
        if _CONTROL.search(value) or ("\n" in value and where not in _MULTILINE_OK):
            raise ConfigError(
                f"{source}: {where} = {quote(value)} holds a control character "
                "(a NUL, a line break or a terminal escape); write plain text."
            )
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ConfigError(f"{source}: {where} = {quote(value)} is too large (at most {MAX_INT}).")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {where} = {value!r} is not a finite number.")
    elif not isinstance(value, (list, dict)):
        kind = {"date": "a date", "datetime": "a date and time", "bytes": "binary data", "set": "a set"}.get(
            type(value).__name__, type(value).__name__
        )
        raise ConfigError(f"{source}: {where} = {quote(value)} is {kind}; write it in quotes as text.")


def _walk(data: Any, source: str, where: str = "") -> None:
    """Keys are text; every value passes ``_check_value`` (iterative: bounded work)."""
    stack = [(where, data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    shown = "~ (empty)" if key is None else quote(key)
                    raise ConfigError(
                        f"{source}: the key {shown}{' under ' + path if path else ''} is not "
                        "text; keys are setting names such as threshold."
                    )
                _check_value(f"{path}.{key}" if path else key, key, source)
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}", item) for i, item in enumerate(value))
        else:
            _check_value(path, value, source)


def _integer_keys() -> set[str]:
    types = {k: p["type"] for k, p in schema()["properties"].items()}
    return {k for k, t in types.items() if t == "integer" or (isinstance(t, list) and "integer" in t)}


def _check_meaning(data: dict[str, Any], source: str) -> None:
    """What the schema cannot say precisely: 2.0 for an integer, duplicate items, names, memory."""
    for key in _integer_keys() & set(data):
        value = data[key]
        if isinstance(value, float):
            example = int(value) if value.is_integer() and abs(value) < MAX_INT else 10
            raise ConfigError(
                f"{source}: {key} = {value!r} is not valid; expected a whole number "
                f"such as {example}, without a decimal point."
            )
    for key in ("notify_on", "mail_to"):
        items = data.get(key)
        if isinstance(items, list):
            twice = sorted({str(i) for i in items if items.count(i) > 1})
            if twice:
                raise ConfigError(f"{source}: {key} lists {quote(', '.join(twice))} more than once.")
    hps = data.get("hyperparameters")
    if isinstance(hps, dict):
        seen: dict[str, str] = {}
        for name in hps:
            if not _HP_NAME.fullmatch(name):
                raise ConfigError(
                    f"{source}: hyperparameters: the name {quote(name)} is not valid; names "
                    "are letters, digits and _, not starting with a digit (each becomes "
                    f"{kt_env.hp_name('<NAME>')})."
                )
            if name.upper() in seen:
                raise ConfigError(
                    f"{source}: hyperparameters {seen[name.upper()]!r} and {name!r} both "
                    f"become KT_HP_{name.upper()}; names must differ in more than case."
                )
            seen[name.upper()] = name
    limit = data.get("memory_limit")
    if isinstance(limit, str) and re.fullmatch(r"[1-9][0-9]{0,9}[kmg]?", limit):
        size = int(limit.rstrip("kmg")) * _UNITS[limit[-1] if limit[-1] in "kmg" else ""]
        if size < MIN_MEMORY_BYTES:
            raise ConfigError(
                f"{source}: memory_limit = {limit!r} is below Docker's minimum of 6m "
                "(6 MiB); a training needs far more, e.g. 4g."
            )


def validate(data: Any, source: str) -> None:
    """Raise ConfigError naming the key, value and expectation of the first problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the configuration must be a mapping of keys to values, got {type(data).__name__}.",
            hint="Write it as `threshold: 0.9` lines, one key per line.",
        )
    _walk(data, source)
    _check_meaning(data, source)
    if data.get("search") is not None:  # its own checks first: they name the exact problem
        search_space.parse(data["search"], source)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: ([str(p) for p in e.absolute_path], e.message))
    if errors:
        raise ConfigError(_message(errors[0], source))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1.0e308`` and ``1e-3`` as numbers (YAML 1.2) and not as text."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _check_shape(text: str, source: str) -> None:
    """Refuse deep nesting before anything recursive runs (the parser's events are a flat stream)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"{source} nests deeper than {MAX_DEPTH} levels; a configuration is "
                    "a flat mapping (hyperparameters one level down)."
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _expanded_size(root: yaml.Node, source: str) -> int:
    """Values the document has once every alias is expanded (counted, never built)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, path: tuple[int, ...]) -> int:
        if id(node) in path:
            raise ConfigError(f"{source}: an alias refers to the value that contains it (a loop).")
        if id(node) not in sizes:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            total = 1 + sum(size(child, (*path, id(node))) for child in children)
            sizes[id(node)] = min(total, MAX_NODES + 1)
        return sizes[id(node)]

    return size(root, ())


def _parse_yaml(text: str, source: str) -> Any:
    _check_shape(text, source)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, source) > MAX_NODES:
            raise ConfigError(
                f"{source} expands to more than {MAX_NODES} values through its aliases "
                "(& and *); write the values out."
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML config file, validated; an empty mapping if the file is empty."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror or exc}.") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB; a configuration is a few lines."
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {raw[exc.start]:#04x} at position {exc.start}).",
            hint="Save the file as UTF-8.",
        ) from None
    try:
        data = _parse_yaml(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc)[:200]
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}.") from None
    except (ValueError, RecursionError, TypeError) as exc:  # e.g. an integer past Python's digit limit
        raise ConfigError(f"{path} holds a value that cannot be read: {str(exc)[:200]}.") from None
    if data is None:
        return {}
    validate(data, str(path))
    return dict(data)


def coerce(key: str, raw: str, source: str = "input") -> Any:
    """Turn a text value (CLI flag, action input) into the type the schema wants."""
    prop = schema()["properties"].get(key)
    if prop is None:
        raise ConfigError(f"{source}: unknown setting {quote(key)}.")
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
            f"{source}: {key} = {quote(raw)} is not valid; expected {_expected(prop)}."
        ) from None
    return text


def resolve(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    *,
    file_required: bool = False,
    source: str = "command line",
) -> Config:
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
    """What no single key can say wrong: a search without a space, a value set twice, parallel epochs."""
    if merged["strategy"] != "search":
        if merged["parallel"] > 1:
            raise ConfigError(
                f"parallel = {merged['parallel']} needs strategy: search: the epochs strategy "
                "trains one model, one attempt after the other.",
                hint="Set `strategy: search` (with a `search:` space), or `parallel: 1`.",
            )
        return
    if merged["search"] is None:
        raise ConfigError(
            "strategy: search needs a search space, and the configuration has no `search` section.",
            hint="Add to .keeptraining.yml: search: {space: {learning_rate: "
            "{type: float, low: 0.0001, high: 0.1, log: true}}}",
        )
    fixed = {name.upper() for name in merged["hyperparameters"]}
    both = sorted(name for name in merged["search"]["space"] if name.upper() in fixed)
    if both:
        raise ConfigError(
            f"{', '.join(both)} is both in hyperparameters (a fixed value) and in search.space (searched).",
            hint="Remove it from one of the two.",
        )
