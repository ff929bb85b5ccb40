"""The ``search:`` section of the configuration: parsed and checked, without importing Optuna.

.. code-block:: yaml

    strategy: search
    search:
      sampler: tpe              # tpe (default) | random | grid
      reduction_factor: 3       # successive halving: the top 1/3 of a rung is promoted
      seed: 0                   # the samplers' seed (each attempt adds the number of trials so far)
      space:
        learning_rate: {type: float, low: 0.0001, high: 0.3, log: true}
        width:         {type: int, low: 16, high: 128, step: 16}
        dropout:       {type: float, low: 0.0, high: 0.5}
        optimizer:     {type: categorical, choices: [sgd, adam]}

Every error names the key, the bad value (at most ~100 characters of it) and what was
expected. ``Param.contains`` is also how values read back from a ledger (untrusted) are
checked before they reach a training script as ``KT_HP_<NAME>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from keeptraining.contract import env as kt_env
from keeptraining.errors import ConfigError

SAMPLERS = ("tpe", "random", "grid")
TYPES = ("float", "int", "categorical")
NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_]{0,63}$"
DEFAULT_SAMPLER = "tpe"
DEFAULT_REDUCTION_FACTOR = 3
DEFAULT_SEED = 0
MAX_GRID_POINTS = 10_000  # a grid larger than this cannot be walked by a bounded chain anyway
MAX_CHOICES = 100
MAX_CHOICE_CHARS = 4096  # a choice reaches the script as an environment variable (at most 128 KiB each)
MAX_MAGNITUDE = 1e15  # low and high of a numeric parameter lie within ±this (Optuna's samplers overflow
# on ranges near the float limits)
MAX_STEPS = 10**12  # a step that cuts the range into more pieces than this is refused
_KEYS = {
    "float": ("type", "low", "high", "step", "log"),
    "int": ("type", "low", "high", "step", "log"),
    "categorical": ("type", "choices"),
}
_SETTINGS_KEYS = ("sampler", "reduction_factor", "seed", "space")
_EXAMPLE = "{type: float, low: 0.0001, high: 0.1, log: true}"
Scalar = str | int | float | bool


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:99] + "…"


@dataclass(frozen=True)
class Param:
    """One dimension of the space."""

    name: str
    type: str  # float | int | categorical
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Scalar, ...] = ()

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (e.g. read back from a ledger) is a point of this dimension."""
        if self.type == "categorical":
            return any(type(value) is type(c) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        tolerance = 1e-9 * max(1.0, abs(self.high - self.low))
        if not self.low - tolerance <= value <= self.high + tolerance:
            return False
        if self.step is None:
            return True
        steps = (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-6

    def size(self) -> int | None:
        """How many values this dimension has, worked out without listing them; None: a continuum."""
        if self.type == "categorical":
            return len(self.choices)
        if self.step is None and self.type != "int":
            return None
        return round((self.high - self.low) / (self.step or 1)) + 1

    def grid(self) -> list[Scalar]:
        """Every value of this dimension (categorical, int, or float with a step); only for a
        dimension whose size() was checked first."""
        if self.type == "categorical":
            return list(self.choices)
        assert self.step is not None or self.type == "int"
        step = self.step or 1
        count = self.size() or 0
        if self.type == "int":
            return [int(self.low + i * step) for i in range(count)]
        return [round(self.low + i * step, 12) for i in range(count)]

    def describe(self) -> str:
        """e.g. ``float in [0.0001, 0.3], log`` or ``one of sgd, adam``."""
        if self.type == "categorical":
            return "one of " + ", ".join(str(c) for c in self.choices)
        text = f"{self.type} in [{self.low:g}, {self.high:g}]"
        if self.step is not None:
            text += f", step {self.step:g}"
        return text + (", log" if self.log else "")


@dataclass(frozen=True)
class SearchSettings:
    sampler: str
    reduction_factor: int
    seed: int
    space: tuple[Param, ...]

    def param(self, name: str) -> Param:
        return next(p for p in self.space if p.name == name)

    def grid_size(self) -> int:
        """The number of points of the grid, worked out arithmetically (never by listing them)."""
        return math.prod(p.size() or 0 for p in self.space)


def parse(data: Any, source: str = "search") -> SearchSettings:
    """The ``search`` mapping as SearchSettings, or a ConfigError that says what to fix."""
    where = f"{source}: search"
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} = {_show(data)} is not valid; expected a mapping with a `space`.",
            hint=f"e.g. search: {{space: {{learning_rate: {_EXAMPLE}}}}}",
        )
    unknown = sorted(str(k) for k in data if k not in _SETTINGS_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}. Known keys: {', '.join(_SETTINGS_KEYS)}."
        )
    sampler = data.get("sampler", DEFAULT_SAMPLER)
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"{where}.sampler = {_show(sampler)} is not valid; expected one of {', '.join(SAMPLERS)}."
        )
    factor = data.get("reduction_factor", DEFAULT_REDUCTION_FACTOR)
    if isinstance(factor, bool) or not isinstance(factor, int) or not 2 <= factor <= 10:
        raise ConfigError(
            f"{where}.reduction_factor = {_show(factor)} is not valid; expected a whole "
            "number from 2 to 10 (3: the best third of each rung is promoted)."
        )
    seed = data.get("seed", DEFAULT_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ConfigError(f"{where}.seed = {_show(seed)} is not valid; expected a whole number >= 0.")
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(
            f"{where}.space = {_show(space)} is not valid; expected a mapping of at least "
            "one parameter name to its range.",
            hint=f"e.g. space: {{learning_rate: {_EXAMPLE}}}",
        )
    params = tuple(parse_param(name, spec, f"{where}.space") for name, spec in space.items())
    seen: dict[str, str] = {}
    for param in params:
        other = seen.setdefault(param.name.upper(), param.name)
        if other != param.name:
            raise ConfigError(
                f"{where}.space: {other!r} and {param.name!r} differ only in case, and both "
                f"would be KT_HP_{param.name.upper()}: the script would see one of them.",
                hint="Rename or remove one of them.",
            )
    settings = SearchSettings(sampler, factor, seed, params)
    if sampler == "grid":
        _check_grid(settings, where)
    return settings


def parse_param(name: Any, spec: Any, where: str) -> Param:
    """One parameter of the space, checked: type, bounds, step, log, choices."""
    import re  # noqa: PLC0415 - only here

    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ConfigError(
            f"{where}: parameter name {_show(name)} is not valid; expected letters, digits "
            "and _ starting with a letter (it becomes KT_HP_<NAME>)."
        )
    at = f"{where}.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{at} = {_show(spec)} is not valid; expected a mapping such as {_EXAMPLE}.")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(
            f"{at}.type = {_show(kind)} is not a known type; expected float, int or categorical."
        )
    extra = sorted(str(k) for k in spec if k not in _KEYS[kind])
    if extra:
        raise ConfigError(
            f"{at}: key(s) {', '.join(extra)} do not apply to type {kind} "
            f"(it takes {', '.join(_KEYS[kind][1:])})."
        )
    if kind == "categorical":
        return Param(name, kind, choices=_choices(spec.get("choices"), at))
    return _numeric(name, kind, spec, at)


def _choices(choices: Any, at: str) -> tuple[Scalar, ...]:
    if not isinstance(choices, list):
        raise ConfigError(
            f"{at}.choices = {_show(choices)} is not valid; expected a list such as [sgd, adam]."
        )
    if not choices:
        raise ConfigError(f"{at}.choices is empty; list at least one value, e.g. [sgd, adam].")
    if len(choices) > MAX_CHOICES:
        raise ConfigError(f"{at}.choices has {len(choices)} values; at most {MAX_CHOICES}.")
    for choice in choices:
        if not isinstance(choice, (str, int, float, bool)) or (
            isinstance(choice, float) and not math.isfinite(choice)
        ):
            raise ConfigError(
                f"{at}.choices: {_show(choice)} is not valid; each choice is text, a number or true/false."
            )
        if isinstance(choice, str) and len(choice) > MAX_CHOICE_CHARS:
            raise ConfigError(
                f"{at}.choices: {_show(choice)} has {len(choice)} characters; at most "
                f"{MAX_CHOICE_CHARS} (it reaches the script in an environment variable)."
            )
    keyed = [(type(c).__name__, c) for c in choices]
    if len(set(keyed)) != len(keyed):
        raise ConfigError(f"{at}.choices = {_show(choices)} lists a value twice.")
    texts: dict[str, Scalar] = {}
    for choice in choices:
        first = texts.setdefault(env_text(choice), choice)
        if first is not choice:
            raise ConfigError(
                f"{at}.choices: {_show(first)} and {_show(choice)} reach the script as the "
                f"same text ({env_text(choice)!r} in KT_HP_): trials would be spent on the "
                "same point twice.",
                hint="Keep one of them.",
            )
    return tuple(choices)


def env_text(value: Any) -> str:
    """How a value reaches the training script in ``KT_HP_<NAME>`` (the contract's own rule)."""
    return kt_env.hp_value(value)


def _number(spec: dict[str, Any], key: str, kind: str, at: str) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    whole = kind == "int" and key != "log"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (whole and not isinstance(value, int))
    ):
        expected = "a whole number" if whole else "a finite number"
        raise ConfigError(f"{at}.{key} = {_show(value)} is not valid; expected {expected}.")
    return value


def _numeric(name: str, kind: str, spec: dict[str, Any], at: str) -> Param:
    low, high = _number(spec, "low", kind, at), _number(spec, "high", kind, at)
    if low is None or high is None:
        missing = "low" if low is None else "high"
        raise ConfigError(
            f"{at}: {missing} is missing; a {kind} parameter needs low and high, e.g. {_EXAMPLE}."
        )
    for key, value in (("low", low), ("high", high)):
        if abs(value) > MAX_MAGNITUDE:
            raise ConfigError(
                f"{at}.{key} = {_show(value)} is out of range; low and high must lie "
                f"between {-MAX_MAGNITUDE:g} and {MAX_MAGNITUDE:g}."
            )
    if low > high:
        raise ConfigError(f"{at}: low = {low!r} is above high = {high!r}; swap them.")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{at}.log = {_show(log)} is not valid; expected true or false.")
    if log and low <= 0:
        raise ConfigError(
            f"{at}: log: true needs low > 0 (got low = {low!r}); a log scale cannot reach 0 or below."
        )
    step = _number(spec, "step", kind, at)
    if step is not None:
        if step <= 0:
            raise ConfigError(f"{at}.step = {step!r} is not valid; expected a number > 0.")
        if log and (kind == "float" or step != 1):
            raise ConfigError(
                f"{at}: step and log: true cannot be combined (Optuna samples a log "
                "scale continuously); drop one of them."
            )
        steps = (high - low) / step
        if not math.isfinite(steps) or steps > MAX_STEPS:
            raise ConfigError(
                f"{at}.step = {step!r} is too small for the range [{low:g}, {high:g}]: it "
                f"would cut it into more than {MAX_STEPS:g} steps.",
                hint="Use a larger step, or none (a continuous range).",
            )
        if abs(steps - round(steps)) > 1e-9:
            fitted = low + math.floor(steps + 1e-9) * step
            raise ConfigError(
                f"{at}: high = {high!r} is not low + a whole number of steps of {step!r}; "
                f"use high: {fitted:g}."
            )
    if kind == "int" and step is None:
        step = 1
    return Param(name, kind, low=low, high=high, step=step, log=log)


def _check_grid(settings: SearchSettings, where: str) -> None:
    for param in settings.space:
        if param.type == "float" and param.step is None:
            raise ConfigError(
                f"{where}: sampler grid needs a step for float parameter {param.name} "
                "(a grid lists every value).",
                hint=f"e.g. {param.name}: {{type: float, low: 0.0, high: 0.5, step: 0.1}}, "
                "or use sampler: tpe.",
            )
    if settings.grid_size() > MAX_GRID_POINTS:
        raise ConfigError(
            f"{where}: the grid has {settings.grid_size()} points; at most {MAX_GRID_POINTS}.",
            hint="Use larger steps or fewer choices, or sampler: tpe.",
        )
