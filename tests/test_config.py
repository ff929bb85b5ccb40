"""Configuration: precedence, type conversion, and every validation error."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeptraining import config
from keeptraining.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".keeptraining.yml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_given(tmp_path: Path) -> None:
    cfg = config.resolve({}, tmp_path / "absent.yml")
    assert cfg.threshold == 0.9
    assert (cfg.epochs, cfg.epoch_step, cfg.max_attempts, cfg.resume) == (10, 10, 10, True)
    assert cfg.sources["threshold"] == "default"


def test_file_overrides_defaults_and_flags_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, "threshold: 0.8\nepochs: 5\nmetric: auc\n")
    cfg = config.resolve({"epochs": 7}, path)
    assert cfg.threshold == 0.8 and cfg.metric == "auc"
    assert cfg.epochs == 7
    expected = {"threshold": str(path), "epochs": "command line", "resume": "default"}
    assert cfg.sources == {**cfg.sources, **expected}


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert config.resolve({}, write(tmp_path, "")).threshold == 0.9


def test_missing_required_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read config file"):
        config.resolve({}, tmp_path / "nope.yml", file_required=True)


@pytest.mark.parametrize(("text", "expected"), [
    ("threshold: 90\n", "write 0.9 for 90 %"),
    ("threshold: -0.5\n", r"threshold = -0.5 is not valid; expected a number > 0 and <= 1"),
    ("threshold: 0\n", "threshold = 0 is not valid"),
    ("threshold: 1.5\n", "threshold = 1.5 is above 1"),
    ("threshold: abc\n", "threshold = 'abc' is not valid; expected a number"),
    ("threshold: .nan\n", "threshold = nan is not a finite number"),
    ("threshold: .inf\n", "threshold = inf is not a finite number"),
    ("epochs: 0\n", "epochs = 0 is not valid; expected a whole number >= 1"),
    ("epochs: -3\n", "epochs = -3 is not valid"),
    ("epochs: 2.5\n", "epochs = 2.5 is not valid; expected a whole number"),
    ("epochs: 100000000\n", "epochs = 100000000 is not valid"),
    ("epoch_step: 0\n", "epoch_step = 0 is not valid"),
    ("max_attempts: 0\n", "max_attempts = 0 is not valid"),
    ("max_attempts: 5000\n", "max_attempts = 5000 is not valid; expected a whole number >= 1 and <= 100"),
    ("resume: maybe\n", "resume = 'maybe' is not valid; expected true or false"),
    ("backend: kubernetes\n", "backend = 'kubernetes' is not valid; expected one of docker, local"),
    ("smtp_security: tls\n", "expected one of starttls, ssl, none"),
    ("memory_limit: lots\n", "memory_limit = 'lots' is not valid"),
    ("memory_limit: 0g\n", "memory_limit = '0g' is not valid"),
    ("notify_on: [reached, sometimes]\n", "notify_on.1 = 'sometimes'"),
    ("epocs: 10\n", "unknown key(s) epocs (did you mean 'epochs'?). Known keys:"),
    ("smtp_password: hunter2\n", "smtp_password must not be written in a file"),
    ("- threshold: 0.9\n", "must be a mapping of keys to values, got list"),
    ("threshold: [0.9\n", "is not valid YAML at line"),
    ("hyperparameters: {'bad name': 1}\n", "hyperparameters"),
])
def test_bad_file_values_name_key_value_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve({}, write(tmp_path, text))
    assert expected in str(info.value)


def test_secret_value_in_file_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve({}, write(tmp_path, "smtp_password: hunter2\n"))
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("key", "raw", "value"), [
    ("threshold", "0.95", 0.95),
    ("threshold", "1", 1),
    ("epochs", "20", 20),
    ("resume", "false", False),
    ("resume", "Yes", True),
    ("mail_to", "a@x.org, b@y.org", ["a@x.org", "b@y.org"]),
    ("backend", "", None),
    ("train_command", "python train.py --fast", "python train.py --fast"),
])
def test_text_values_are_converted_by_schema_type(key: str, raw: str, value: object) -> None:
    assert config.coerce(key, raw) == value


@pytest.mark.parametrize(("key", "raw", "expected"), [
    ("threshold", "abc", "threshold = 'abc' is not valid; expected a number > 0 and <= 1"),
    ("epochs", "ten", "epochs = 'ten' is not valid; expected a whole number"),
    ("epochs", "1.5", "epochs = '1.5' is not valid"),
    ("resume", "perhaps", "expected true or false"),
])
def test_bad_text_values_are_rejected_before_validation(key: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        config.coerce(key, raw, source="--x")


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"threshold": 90}, "write 0.9 for 90 %"),
    ({"threshold": float("nan")}, "not a finite number"),
    ({"epochs": 0}, "epochs = 0"),
])
def test_bad_flag_values_are_reported_against_their_source(overrides: dict[str, object],
                                                           expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        config.resolve(overrides, None)
    assert str(info.value).startswith("command line")


def test_schema_rejects_unknown_keys_everywhere() -> None:
    assert config.schema()["additionalProperties"] is False
    assert set(config.schema()["properties"]) == set(config.DEFAULTS)
