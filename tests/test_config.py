"""Configuration: precedence, type conversion, and every validation error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keeptraining.config import settings as config
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
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
    ],
)
def test_bad_file_values_name_key_value_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve({}, write(tmp_path, text))
    assert expected in str(info.value)


def test_secret_value_in_file_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve({}, write(tmp_path, "smtp_password: hunter2\n"))
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("threshold", "0.95", 0.95),
        ("threshold", "1", 1),
        ("epochs", "20", 20),
        ("resume", "false", False),
        ("resume", "Yes", True),
        ("mail_to", "a@x.org, b@y.org", ["a@x.org", "b@y.org"]),
        ("backend", "", None),
        ("train_command", "python train.py --fast", "python train.py --fast"),
    ],
)
def test_text_values_are_converted_by_schema_type(key: str, raw: str, value: object) -> None:
    assert config.coerce(key, raw) == value


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("threshold", "abc", "threshold = 'abc' is not valid; expected a number > 0 and <= 1"),
        ("epochs", "ten", "epochs = 'ten' is not valid; expected a whole number"),
        ("epochs", "1.5", "epochs = '1.5' is not valid"),
        ("resume", "perhaps", "expected true or false"),
    ],
)
def test_bad_text_values_are_rejected_before_validation(key: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        config.coerce(key, raw, source="--x")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"threshold": 90}, "write 0.9 for 90 %"),
        ({"threshold": float("nan")}, "not a finite number"),
        ({"epochs": 0}, "epochs = 0"),
    ],
)
def test_bad_flag_values_are_reported_against_their_source(
    overrides: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        config.resolve(overrides, None)
    assert str(info.value).startswith("command line")


def test_schema_rejects_unknown_keys_everywhere() -> None:
    assert config.schema()["additionalProperties"] is False
    assert set(config.schema()["properties"]) == set(config.DEFAULTS)


# --------------------------------------------------------------------------- hostile files


def write_bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / ".keeptraining.yml"
    path.write_bytes(data)
    return path


ALIAS_BOMB = (
    "a: &a ["
    + ",".join(["x"] * 10)
    + "]\n"
    + "".join(
        f"{chr(ord('b') + i)}: &{chr(ord('b') + i)} [" + ",".join([f"*{chr(ord('a') + i)}"] * 10) + "]\n"
        for i in range(8)
    )
    + "hyperparameters: {x: *i}\n"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "is not UTF-8 text (byte 0x89 at position 0)"),
        ("threshold: 0.9\ncode_path: caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
        ("threshold: 0.9\n".encode("utf-16"), "is not UTF-8 text (byte 0xff at position 0)"),
        (b"1: a\n", "the key 1 is not text"),
        (b"~: a\n", "the key ~ (empty) is not text"),
        (b"true: a\n", "the key True is not text"),
        (b"2001-12-14: 1\n", "the key datetime.date(2001, 12, 14) is not text"),
        (b"hyperparameters: {1: a}\n", "the key 1 under hyperparameters is not text"),
        (b"epochs: " + b"9" * 5000 + b"\n", "holds a value that cannot be read"),
        (b"epochs: " + b"9" * 40 + b"\n", "is too large"),
        (b"[" * 20000 + b"]" * 20000, "nests deeper than 8 levels"),
        (b"{a: " * 5000 + b"1" + b"}" * 5000, "nests deeper than 8 levels"),
        (ALIAS_BOMB.encode(), "expands to more than 10000 values through its aliases"),
        (b"hyperparameters: &a {x: *a}\n", "an alias refers to the value that contains it"),
        (b'code_path: "ml\\0code"\n', "code_path = 'ml\\x00code' holds a control character"),
        (
            b'train_command: "python\\0 nn.py"\n',
            "train_command = 'python\\x00 nn.py' holds a control character",
        ),
        (b'state_dir: "a\\0b"\n', "state_dir = 'a\\x00b' holds a control character"),
        (b'hyperparameters: {lr: "0.1\\0"}\n', "hyperparameters.lr = '0.1\\x00' holds a control character"),
        (b'metric: "acc\\e[31m"\n', "holds a control character"),
        (b'mail_to: ["a@b.c\\nBcc: x@y.z"]\n', "mail_to.0 = 'a@b.c\\nBcc: x@y.z' holds a control character"),
        (b"code_path: !!binary aGVsbG8=\n", "code_path = b'hello' is binary data"),
        (b"code_path: 2001-12-14\n", "code_path = datetime.date(2001, 12, 14) is a date; write it in quotes"),
        (b"epochs: 2.0\n", "epochs = 2.0 is not valid; expected a whole number such as 2, without a decimal"),
        (b"max_attempts: 3.0\n", "max_attempts = 3.0 is not valid; expected a whole number such as 3"),
        (b"epoch_step: 1e1\n", "epoch_step = 10.0 is not valid; expected a whole number such as 10"),
        (b"memory_limit: 1k\n", "memory_limit = '1k' is below Docker's minimum of 6m"),
        (b"memory_limit: 5m\n", "below Docker's minimum"),
        (b"hyperparameters: {lr: 0.1, LR: 0.2}\n", "hyperparameters 'lr' and 'LR' both become KT_HP_LR"),
        (b"hyperparameters: {a=b: 1}\n", "hyperparameters: the name 'a=b' is not valid; names are letters"),
        (b"hyperparameters: {a b: 1}\n", "the name 'a b' is not valid"),
        (b"hyperparameters: {1x: 1}\n", "the name '1x' is not valid"),
        (b"notify_on: [reached, reached]\n", "notify_on lists 'reached' more than once"),
        (b"threshold: 1.0e308\n", "threshold = 1e+308 is above 1; a threshold is a fraction in (0, 1]"),
        (b"threshold: 9.0e-1x\n", "threshold = '9.0e-1x' is not valid; expected a number"),
        (b"code_path: " + b"x" * 100000 + b"\n", "is larger than 64 KiB"),
        (b"metric: '" + b"x" * 500 + b"'\n", "metric = 'xxxxxxxxxx"),
    ],
)
def test_hostile_config_files_get_a_message_not_a_traceback(
    tmp_path: Path, data: bytes, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve({}, write_bytes(tmp_path, data))
    message = str(info.value)
    assert expected in message
    assert len(message) < 400, "a bad value is quoted, not printed whole"


def test_yaml_1_2_numbers_are_numbers(tmp_path: Path) -> None:
    cfg = config.resolve({}, write(tmp_path, "threshold: 9.5e-1\nhyperparameters: {lr: 1e-3}\n"))
    assert cfg.threshold == 0.95 and cfg.hyperparameters == {"lr": 0.001}


def test_underscore_hyperparameter_names_and_build_timeout(tmp_path: Path) -> None:
    cfg = config.resolve({}, write(tmp_path, "hyperparameters: {_seed: 1}\nbuild_timeout: 90\n"))
    assert cfg.hyperparameters == {"_seed": 1} and cfg.build_timeout == 90


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"train_command": "python\x00nn.py"},
            "train_command = 'python\\x00nn.py' holds a control character",
        ),
        (
            {"hyperparameters": {"lr": "1\x1b[2J"}},
            "hyperparameters.lr = '1\\x1b[2J' holds a control character",
        ),
        ({"epochs": 2.0}, "epochs = 2.0 is not valid"),
    ],
)
def test_hostile_flags_and_inputs_are_refused_too(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config.resolve(overrides, None)


def test_long_bad_text_value_is_quoted_briefly() -> None:
    with pytest.raises(ConfigError) as info:
        config.coerce("epochs", "9" * 10000, source="--epochs")
    assert len(str(info.value)) < 250
