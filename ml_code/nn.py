"""The sample model: a small Keras CNN that honours keeptraining's training contract.

Run it by hand from this folder (writes ./output/model.keras and ./output/metrics.json):

    python nn.py                                  # 10 epochs on scikit-learn's digits
    KT_EPOCHS=30 KT_THRESHOLD=0.9 python nn.py    # stop early once val accuracy >= 0.9

Run it the way keeptraining runs one attempt of a chain (resume 10 -> 20 epochs):

    KT_EPOCHS=20 KT_INITIAL_EPOCH=10 KT_RESUME_FROM=/tmp/kt/1/model.keras \
    KT_THRESHOLD=0.9 KT_OUTPUT_DIR=/tmp/kt/2 KT_HP_LEARNING_RATE=0.01 python nn.py

Every input comes from the environment (DESIGN.md §1): KT_EPOCHS, KT_INITIAL_EPOCH,
KT_RESUME_FROM, KT_THRESHOLD, KT_METRIC, KT_OUTPUT_DIR, KT_DEADLINE (Unix time: stop at an
epoch boundary before it, and say "stopped": "deadline"; the next run goes on) and the hyperparameters
KT_HP_DATASET, KT_HP_LEARNING_RATE, KT_HP_BATCH_SIZE, KT_HP_SEED, KT_HP_EARLY_STOP, and the
architecture KT_HP_WIDTH, KT_HP_DEPTH, KT_HP_DROPOUT, KT_HP_OPTIMIZER (what `strategy: search`
tunes). An empty value means "unset". Results go to KT_OUTPUT_DIR only, never to the code
folder, which may be read-only (Keras itself keeps keras.json and the downloaded datasets under
~/.keras).
The result is $KT_OUTPUT_DIR/metrics.json plus a last line `Test accuracy: 0.9312`.
With the defaults, threshold 0.9 and 10 more epochs per attempt, the chain needs 3
attempts: validation accuracy crosses 0.90 near epoch 25.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

START = time.perf_counter()

# Defaults (each overridable through the environment variable named in brackets).
EPOCHS = 10  # total epochs when run by hand [KT_EPOCHS]
OUTPUT_DIR = "output"  # only for runs by hand; keeptraining passes its own [KT_OUTPUT_DIR]
METRIC = "accuracy"  # the one metric this model reports [KT_METRIC]
DATASET = "digits"  # scikit-learn's bundled 8x8 digits: offline, loads in milliseconds [KT_HP_DATASET]
LEARNING_RATE = 0.01  # plain SGD, slow on purpose: a 3-attempt chain at 0.9 [KT_HP_LEARNING_RATE]
BATCH_SIZE = 32  # 43 steps an epoch on digits, ~0.25 s an epoch on 2 CPU cores [KT_HP_BATCH_SIZE]
SEED = 1337  # weights, dropout and shuffling; attempt n reseeds with SEED + initial epoch [KT_HP_SEED]
EARLY_STOP = True  # stop as soon as the validation metric reaches KT_THRESHOLD [KT_HP_EARLY_STOP]
WIDTH = 32  # filters of the first Conv2D block; each further block doubles them [KT_HP_WIDTH]
DEPTH = 2  # Conv2D + MaxPooling blocks (digits' 8x8 images allow at most 3) [KT_HP_DEPTH]
DROPOUT = 0.5  # before the softmax layer [KT_HP_DROPOUT]
OPTIMIZER = "sgd"  # sgd (plain), adam or rmsprop [KT_HP_OPTIMIZER]
# Fixed, not hyperparameters.
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")  # the last three download through Keras
VALIDATION_FRACTION = 0.25  # digits: stratified hold-out whose accuracy is the reported metric
SPLIT_SEED = 0  # the split never follows KT_HP_SEED, so no attempt validates on its training data
OPTIMIZERS = ("sgd", "adam", "rmsprop")
CHECKPOINT = "model.keras"  # written to KT_OUTPUT_DIR and named in metrics.json
HYPERPARAMETERS = (
    "DATASET",
    "LEARNING_RATE",
    "BATCH_SIZE",
    "SEED",
    "EARLY_STOP",  # KT_HP_<NAME> known here
    "WIDTH",
    "DEPTH",
    "DROPOUT",
    "OPTIMIZER",
)
# Optional packages that `import keras` loads when they are installed and this model never uses
# (scikit-learn for keras.wrappers, matplotlib for keras.visualization): about 1 s of every run.
UNUSED_BY_KERAS = ("sklearn", "matplotlib")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ConfigError(Exception):
    """A bad input: the message names the variable, its value and what was expected."""


@dataclass(frozen=True)
class Config:
    epochs: int
    initial_epoch: int
    resume_from: str
    threshold: float | None
    metric: str
    output_dir: Path
    deadline: float | None  # Unix time by which this run stops training (the next run goes on)
    dataset: str
    learning_rate: float
    batch_size: int
    seed: int
    early_stop: bool
    width: int
    depth: int
    dropout: float
    optimizer: str


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _int(name: str, default: int, minimum: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; expected an integer >= {minimum}, e.g. {name}={default}."
        ) from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} is too small; expected an integer >= {minimum}.")
    return value


def _float(
    name: str, default: float, low: float, high: float, hint: str = "", *, with_low: bool = False
) -> float:
    """A number in (low, high], or [low, high] ``with_low``."""
    raw = _env(name)
    if raw is None:
        return default
    interval = f"{'[' if with_low else '('}{low}, {high}]"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; expected a number in {interval}.") from None
    if not (low <= value if with_low else low < value) or not value <= high:  # also rejects nan
        raise ConfigError(f"{name}={raw!r} is out of range; expected a number in {interval}{hint}.")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE + _FALSE:
        return raw.lower() in _TRUE
    raise ConfigError(f"{name}={raw!r} is not a boolean; expected true or false.")


def read_config() -> Config:
    """The effective configuration: the KT_* environment over the defaults above."""
    unknown = sorted(
        key for key in os.environ if key.startswith("KT_HP_") and key[len("KT_HP_") :] not in HYPERPARAMETERS
    )
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter {', '.join(unknown)}; this model knows "
            f"{', '.join('KT_HP_' + name for name in HYPERPARAMETERS)}."
        )
    epochs = _int("KT_EPOCHS", EPOCHS, 1)
    initial_epoch = _int("KT_INITIAL_EPOCH", 0, 0)
    if initial_epoch > epochs:
        raise ConfigError(
            f"KT_INITIAL_EPOCH={initial_epoch} is more than KT_EPOCHS={epochs}; "
            "KT_EPOCHS is the total the model should have after this run."
        )
    threshold = (
        _float("KT_THRESHOLD", 1.0, 0.0, 1.0, hint=", a fraction (0.9, not 90)")
        if _env("KT_THRESHOLD")
        else None
    )
    metric = _env("KT_METRIC") or METRIC
    if metric != METRIC:
        raise ConfigError(f"KT_METRIC={metric!r} is not reported by this model; expected {METRIC!r}.")
    dataset = _env("KT_HP_DATASET") or DATASET
    if dataset not in DATASETS:
        raise ConfigError(f"KT_HP_DATASET={dataset!r} is not known; expected one of {', '.join(DATASETS)}.")
    optimizer = (_env("KT_HP_OPTIMIZER") or OPTIMIZER).lower()
    if optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"KT_HP_OPTIMIZER={optimizer!r} is not known; expected one of {', '.join(OPTIMIZERS)}."
        )
    dropout = _float("KT_HP_DROPOUT", DROPOUT, 0.0, 0.99, with_low=True)
    deadline = _float("KT_DEADLINE", 0.0, 0.0, 1e12) if _env("KT_DEADLINE") else None
    return Config(
        epochs=epochs,
        initial_epoch=initial_epoch,
        resume_from=_env("KT_RESUME_FROM") or "",
        threshold=threshold,
        metric=metric,
        output_dir=Path(_env("KT_OUTPUT_DIR") or OUTPUT_DIR),
        deadline=deadline,
        dataset=dataset,
        learning_rate=_float("KT_HP_LEARNING_RATE", LEARNING_RATE, 0.0, 10.0),
        batch_size=_int("KT_HP_BATCH_SIZE", BATCH_SIZE, 1),
        seed=_int("KT_HP_SEED", SEED, 0),
        early_stop=_bool("KT_HP_EARLY_STOP", EARLY_STOP),
        width=_int("KT_HP_WIDTH", WIDTH, 1),
        depth=_int("KT_HP_DEPTH", DEPTH, 1),
        dropout=dropout,
        optimizer=optimizer,
    )


def import_keras() -> Any:
    """Keras (and TensorFlow under it), imported only once the inputs are known to be good."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info/warning banners
    # oneDNN's custom ops give this model the same numbers here, but they print a banner that
    # TF_CPP_MIN_LOG_LEVEL does not silence and they pick kernels by CPU (AVX-512 or AVX2).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # Keras imports its optional integrations only if it can: hide the unused ones while it
    # loads (None in sys.modules makes their import fail), then let them be imported normally.
    hidden = [name for name in UNUSED_BY_KERAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # blocks the import (documented)
    try:
        import keras  # noqa: PLC0415 - a 2-3 s import; bad inputs are rejected before it
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
    return keras


def load_digits() -> tuple[Any, Any, Any, Any]:
    """scikit-learn's digits and its train_test_split(test_size=0.25, stratify=y, random_state=0).

    Read straight from the CSV that scikit-learn bundles, and split with the same steps and the
    same random draws as its StratifiedShuffleSplit, without importing scikit-learn: that import
    (SciPy's statistics with it) costs about 1 s, and the arrays are identical.
    """
    import gzip  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415
    import math  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415 - loaded with TensorFlow anyway

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("KT_HP_DATASET='digits' needs scikit-learn installed (it bundles the data).")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = np.loadtxt(fh, delimiter=",")
    images = (data[:, :-1].reshape(-1, 8, 8) / 16.0).astype("float32")[..., np.newaxis]
    target = data[:, -1].astype(int)

    rng = np.random.RandomState(SPLIT_SEED)  # scikit-learn's legacy generator: the same draws
    n_val = math.ceil(VALIDATION_FRACTION * len(target))
    classes, y_indices, counts = np.unique(target, return_inverse=True, return_counts=True)
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(counts)[:-1])

    def approximate_mode(class_counts: Any, draws: int) -> Any:  # sklearn.utils.extmath's
        continuous = class_counts / class_counts.sum() * draws
        floored = np.floor(continuous)
        need = int(draws - floored.sum())
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            if need <= 0:
                break
            (inds,) = np.where(remainder == value)
            add = min(len(inds), need)
            floored[rng.choice(inds, size=add, replace=False)] += 1
            need -= add
        return floored.astype(int)

    n_train_per_class = approximate_mode(counts, len(target) - n_val)
    n_val_per_class = approximate_mode(counts - n_train_per_class, n_val)
    train: list[int] = []
    val: list[int] = []
    for i in range(len(classes)):
        shuffled = class_indices[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(shuffled[: n_train_per_class[i]])
        val.extend(shuffled[n_train_per_class[i] : n_train_per_class[i] + n_val_per_class[i]])
    train_idx, val_idx = rng.permutation(train), rng.permutation(val)
    return images[train_idx], target[train_idx], images[val_idx], target[val_idx]


def load_data(keras: Any, dataset: str) -> tuple[Any, Any, Any, Any]:
    """(x_train, y_train, x_val, y_val), images scaled to [0, 1] with a channel axis."""
    import numpy as np  # noqa: PLC0415 - loaded with TensorFlow anyway

    if dataset == "digits":
        return load_digits()
    try:
        (x_train, y_train), (x_val, y_val) = getattr(keras.datasets, dataset).load_data()
    except Exception as exc:
        raise ConfigError(
            f"KT_HP_DATASET={dataset!r} could not be loaded ({type(exc).__name__}: {exc}). "
            "Keras downloads it on first use, which needs the internet; offline, use "
            "KT_HP_DATASET=digits (bundled with scikit-learn)."
        ) from exc

    def scale(images: Any) -> Any:
        images = (images / 255.0).astype("float32")
        return images[..., np.newaxis] if images.ndim == 3 else images

    return scale(x_train), y_train.reshape(-1), scale(x_val), y_val.reshape(-1)


def max_depth(input_shape: tuple[int, ...]) -> int:
    """Pooling blocks the images allow: each halves height and width (8x8 digits: 3)."""
    side, depth = min(input_shape[0], input_shape[1]), 0
    while side >= 2:
        side, depth = side // 2, depth + 1
    return depth


def build_model(keras: Any, cfg: Config, input_shape: tuple[int, ...], classes: int) -> Any:
    """DEPTH blocks of Conv2D (WIDTH filters, doubled per block) + MaxPooling, dropout, softmax;
    with the defaults, keras-io's mnist_convnet: Conv2D 32 and 64."""
    if cfg.depth > max_depth(input_shape):
        raise ConfigError(
            f"KT_HP_DEPTH={cfg.depth} is too deep for the {cfg.dataset} images "
            f"({input_shape[0]}x{input_shape[1]}); expected at most {max_depth(input_shape)}."
        )
    layers = keras.layers
    blocks = []
    for i in range(cfg.depth):
        blocks += [
            layers.Conv2D(cfg.width * 2**i, kernel_size=3, padding="same", activation="relu"),
            layers.MaxPooling2D(pool_size=2),
        ]
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *blocks,
            layers.Flatten(),
            layers.Dropout(cfg.dropout),
            layers.Dense(classes, activation="softmax"),
        ]
    )
    optimizers = {
        "sgd": keras.optimizers.SGD,
        "adam": keras.optimizers.Adam,
        "rmsprop": keras.optimizers.RMSprop,
    }
    model.compile(
        optimizer=optimizers[cfg.optimizer](learning_rate=cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=[METRIC],
    )
    return model


def load_checkpoint(keras: Any, cfg: Config, input_shape: tuple[int, ...]) -> tuple[Any, str]:
    """(model, "") when KT_RESUME_FROM can be resumed, else (None, why not)."""
    if not cfg.resume_from:
        return None, f"KT_INITIAL_EPOCH={cfg.initial_epoch} but KT_RESUME_FROM is empty"
    path = Path(cfg.resume_from)
    if not path.is_file():
        return None, f"KT_RESUME_FROM={cfg.resume_from} does not exist"
    try:
        model = keras.models.load_model(path)
    except Exception as exc:
        return None, f"KT_RESUME_FROM={cfg.resume_from} could not be loaded ({type(exc).__name__}: {exc})"
    if tuple(model.input_shape[1:]) != input_shape:
        return None, (
            f"KT_RESUME_FROM={cfg.resume_from} takes inputs of shape {model.input_shape[1:]}, "
            f"not {cfg.dataset}'s {input_shape}"
        )
    model.optimizer.learning_rate = cfg.learning_rate  # the rest of its state comes from the file
    return model, ""


def start_model(keras: Any, cfg: Config, input_shape: tuple[int, ...], classes: int) -> tuple[Any, int, bool]:
    """(model, epochs it already has, resumed): the checkpoint when it can be used, else a new model."""
    if cfg.resume_from or cfg.initial_epoch:
        # Seeded before loading: Keras draws the dropout layer's seed as it rebuilds the model.
        # SEED + initial epoch gives this attempt its own shuffles instead of replaying attempt 1's.
        keras.utils.set_random_seed(cfg.seed + cfg.initial_epoch)
        model, why_not = load_checkpoint(keras, cfg, input_shape)
        if model is not None:
            print(f"Resuming from {cfg.resume_from}: epochs {cfg.initial_epoch} -> {cfg.epochs}.")
            return model, cfg.initial_epoch, True
        print(
            f"WARNING: {why_not}; training FROM SCRATCH for {cfg.epochs} epochs "
            f"(epochs 0 -> {cfg.epochs}), not resuming."
        )
    keras.utils.set_random_seed(cfg.seed)
    return build_model(keras, cfg, input_shape, classes), 0, False


def epoch_callbacks(
    keras: Any, cfg: Config, seconds: list[float], stopped: list[str] | None = None
) -> list[Any]:
    """Wall time of every epoch, and a stop once the validation metric reaches KT_THRESHOLD
    (unless KT_HP_EARLY_STOP is false: then every epoch up to KT_EPOCHS is trained), or
    before an epoch that would end after KT_DEADLINE (``stopped`` then holds "deadline")."""
    started: list[float] = []
    monitor = f"val_{cfg.metric}"

    def on_epoch_end(epoch: int, logs: dict[str, float] | None) -> None:
        seconds.append(time.perf_counter() - started[-1])
        value = (logs or {}).get(monitor)
        if cfg.early_stop and cfg.threshold is not None and value is not None and value >= cfg.threshold:
            print(f"{monitor} {value:.4f} >= threshold {cfg.threshold} at epoch {epoch + 1}: stopping.")
            callback.model.stop_training = True
        elif (
            cfg.deadline is not None and epoch + 1 < cfg.epochs and time.time() + max(seconds) > cfg.deadline
        ):
            print(f"Stopping after epoch {epoch + 1}: the next epoch would end after KT_DEADLINE.")
            if stopped is not None:
                stopped.append("deadline")
            callback.model.stop_training = True

    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(time.perf_counter()), on_epoch_end=on_epoch_end
    )
    return [callback]


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the whole new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_model_atomically(model: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.keras")  # Keras insists on the suffix
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"KT_OUTPUT_DIR={path} cannot be created ({exc}).") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"KT_OUTPUT_DIR={path} is not writable.")


def print_config(cfg: Config) -> None:
    print("Configuration:")
    for key, value in asdict(cfg).items():
        print(f"  {key:<14} {value if value not in ('', None) else '-'}")


def train(cfg: Config) -> dict[str, Any]:
    """One run of the contract; returns what goes into metrics.json."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    keras = import_keras()
    lap("import_s")
    x_train, y_train, x_val, y_val = load_data(keras, cfg.dataset)
    input_shape, classes = tuple(x_train.shape[1:]), int(y_train.max()) + 1
    lap("data_s")
    model, initial_epoch, resumed = start_model(keras, cfg, input_shape, classes)
    lap("build_or_load_s")

    epoch_seconds: list[float] = []
    stopped: list[str] = []
    history = model.fit(
        x_train,
        y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        initial_epoch=initial_epoch,
        validation_data=(x_val, y_val),
        verbose=2,
        callbacks=epoch_callbacks(keras, cfg, epoch_seconds, stopped),
    ).history
    lap("fit_s")
    trained = len(epoch_seconds)
    if trained:  # the last epoch's validation pass already measured the model as saved
        value = float(history[f"val_{cfg.metric}"][-1])
    else:  # nothing left to train (KT_INITIAL_EPOCH == KT_EPOCHS): measure the checkpoint
        value = float(model.evaluate(x_val, y_val, verbose=0, return_dict=True)[cfg.metric])
    lap("evaluate_s")
    save_model_atomically(model, cfg.output_dir / CHECKPOINT)
    lap("save_s")
    timings["total_s"] = round(time.perf_counter() - START, 3)
    epochs = initial_epoch + trained
    return {
        cfg.metric: value,
        "metric": cfg.metric,
        "epochs": epochs,
        "initial_epoch": initial_epoch,
        "resumed": resumed,
        "early_stopped": epochs < cfg.epochs and not stopped,
        "stopped": stopped[0] if stopped else None,
        "history": {key: [float(v) for v in values] for key, values in history.items()},
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
        "timings": timings,
        "checkpoint": CHECKPOINT,
        "dataset": cfg.dataset,
    }


def main() -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # epoch lines stream live through a pipe
    try:
        cfg = read_config()
        print_config(cfg)
        prepare_output_dir(cfg.output_dir)
        metrics = train(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomically(cfg.output_dir / "metrics.json", metrics)
    print(f"Saved {cfg.output_dir / CHECKPOINT} and metrics.json ({metrics['epochs']} epochs).")
    print(f"Test {cfg.metric}: {metrics[cfg.metric]:.4f}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written, closed and flushed: skip TensorFlow's interpreter teardown,
    # which adds about 0.7 s to every attempt and has nothing left to save.
    os._exit(code)
