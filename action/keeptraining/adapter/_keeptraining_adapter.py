"""keeptraining's Keras adapter: an unmodified Keras script follows the training contract.

Runs inside the training process (loaded by this folder's ``sitecustomize.py``), in
whatever Python the training image has: standard library only, and Keras once the
script itself has imported it (the adapter never imports TensorFlow or Keras: that
would cost every script two seconds, even one that never trains).

What it does, once the script imports Keras 3 (``keras`` or ``tf.keras`` on TF >= 2.16):

* ``Model.fit`` trains the model to ``KT_EPOCHS``, from ``KT_INITIAL_EPOCH``, whatever
  ``epochs`` the script passed. All ``fit`` calls on the script's model are one
  timeline: each trains the epochs it asks for, from where the model is, and none goes
  past ``KT_EPOCHS``; if the script's fit calls end below ``KT_EPOCHS``, the last one is
  continued to ``KT_EPOCHS`` before the script uses the model (``evaluate``,
  ``predict``, ``save``) or exits. A stop asked by a callback (the threshold, the
  script's own ``EarlyStopping``) is respected and never continued.
* Before the first ``fit`` it restores ``KT_RESUME_FROM`` into the script's own model:
  weights and optimizer variables (moments, ``iterations``), the way Keras's
  ``BackupAndRestore`` does. A checkpoint that does not fit the model is reported, any
  half-loaded weights are put back, and training starts from scratch.
* It stops the training once ``val_<KT_METRIC>`` reaches ``KT_THRESHOLD``; the script's
  callbacks keep working. ``KT_HP_LEARNING_RATE`` and ``KT_HP_BATCH_SIZE`` are applied.
* After every epoch, ``fit`` and ``evaluate`` it saves ``$KT_OUTPUT_DIR/model.keras`` and
  writes ``metrics.json``: the metric of the script's last ``evaluate``, else the last
  ``val_<metric>``, else the training metric, with ``metric_source`` saying which,
  plus the per-epoch history. A ``metrics.json`` the script writes itself wins. Saving at
  every epoch end (Keras's ``BackupAndRestore`` does the same) means a run that is killed
  (a cancellation, a timeout, a preempted machine) loses at most the epoch in progress.
* With ``KT_DEADLINE`` (Unix time) it stops after the epoch past which the next one would
  not end in time (the longest epoch so far is the guess), so the attempt goes on in the
  next run; ``metrics.json`` then says ``"stopped": "deadline"``. It always trains at
  least one epoch, so every run makes progress.
* With ``KT_ADAPT=auto`` it steps aside, changing nothing, when the script already
  follows the contract: its first ``fit`` passes ``epochs=KT_EPOCHS`` and
  ``initial_epoch=KT_INITIAL_EPOCH`` read from the environment.
* In logs (no terminal) Keras prints one line per epoch (``verbose=2``), and
  TensorFlow's start-up banners are filtered out.

It writes nothing outside ``KT_OUTPUT_DIR`` and the temporary folder. Nothing in it may
break the script: where it cannot do its part, it says so and lets the call run as written.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

PREFIX = "keeptraining adapter: "
ACTIVE_MODES = ("auto", "keras")
CHECKPOINT = "model.keras"
WEIGHTS_ONLY = "model.weights.h5"  # when the model cannot be saved whole
METRICS_FILE = "metrics.json"
MAX_FOREIGN_METRICS_BYTES = 5 * 1024 * 1024
HOOKED_METHODS = ("fit", "evaluate", "predict", "save", "save_weights")
# The training contract's variables: a copy of keeptraining.contract.env.VARIABLES (this module runs
# inside the training process, stdlib only); tests/test_architecture.py checks that the two agree.
CONTRACT_VARIABLES = ("KT_EPOCHS", "KT_INITIAL_EPOCH", "KT_RESUME_FROM", "KT_THRESHOLD", "KT_METRIC",
                      "KT_OUTPUT_DIR", "KT_HP_", "KT_DEADLINE", "KT_CACHE_DIR", "KT_ADAPT", "KT_ATTEMPT")
# What TensorFlow prints to stderr before its logging is set up, whatever TF_CPP_MIN_LOG_LEVEL says.
_BANNER = re.compile(r"^(?:I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
                     r"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
_OPTIMIZER_SKIPPED = "Skipping variable loading for optimizer"

ADAPTER: Adapter | None = None


def say(text: str) -> None:
    """One line in the training log, on stdout so that it lands between Keras's epoch lines."""
    sys.stdout.write(PREFIX + text + "\n")
    sys.stdout.flush()


def short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Settings:
    """The training contract's environment, as the adapter needs it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.mode = env.get("KT_ADAPT", "").strip().lower()
        self.epochs = int(env["KT_EPOCHS"])
        self.initial_epoch = int(env.get("KT_INITIAL_EPOCH") or 0)
        self.resume_from = env.get("KT_RESUME_FROM", "").strip()
        self.metric = env.get("KT_METRIC", "").strip() or "accuracy"
        self.output_dir = env["KT_OUTPUT_DIR"]
        self.threshold = _number(env.get("KT_THRESHOLD"), float)
        self.learning_rate = _number(env.get("KT_HP_LEARNING_RATE"), float)
        self.batch_size = _number(env.get("KT_HP_BATCH_SIZE"), int)
        self.deadline = _number(env.get("KT_DEADLINE"), float)  # Unix time: stop before it
        self.previous = _previous_report(self.resume_from)


def _previous_report(checkpoint: str) -> dict[str, Any]:
    """The metrics.json written beside the checkpoint by the previous attempt ({} if none)."""
    if not checkpoint:
        return {}
    path = os.path.join(os.path.dirname(checkpoint), METRICS_FILE)
    try:
        if os.path.isfile(path) and os.path.getsize(path) <= MAX_FOREIGN_METRICS_BYTES:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        pass
    return {}


def _number(raw: str | None, kind: type) -> Any:
    try:
        return kind(raw) if raw and raw.strip() else None
    except ValueError:
        return None


def install(env: Mapping[str, str] = os.environ) -> bool:
    """Wait for the script to import Keras, if KT_ADAPT asks for the adapter; True if it will."""
    global ADAPTER  # noqa: PLW0603 - one adapter per process, reached from the patched methods
    if env.get("KT_ADAPT", "").strip().lower() not in ACTIVE_MODES:
        return False
    try:
        settings = Settings(env)
    except (KeyError, ValueError):
        return False  # not run by keeptraining (no KT_EPOCHS / KT_OUTPUT_DIR): nothing to adapt
    ADAPTER = Adapter(settings)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info and warning lines
    if settings.mode == "auto":
        _watch_epochs_lookup(ADAPTER)
    sys.meta_path.insert(0, _ImportWatcher(ADAPTER))
    return True


def _watch_epochs_lookup(adapter: Adapter) -> None:
    """Note whether the script looks up KT_EPOCHS (``os.environ[...]``, ``.get``, ``os.getenv``).

    That is how ``auto`` tells a script that follows the contract from one whose
    hard-coded ``epochs`` happens to equal KT_EPOCHS.
    """
    base = type(os.environ)

    class WatchedEnviron(base):  # type: ignore[valid-type,misc]
        def __getitem__(self, key: str) -> str:
            if key == "KT_EPOCHS":
                adapter.read_epochs = True
            return base.__getitem__(self, key)

    try:
        os.environ.__class__ = WatchedEnviron
    except TypeError:
        adapter.read_epochs = None  # cannot tell: trust the fit arguments alone


class _ImportWatcher:
    """A meta path finder that finds nothing itself: it wraps the loading of keras and tensorflow."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.searching = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        # Every search is answered, not only the first: TensorFlow probes for keras with
        # importlib.util.find_spec before importing it, and a probe executes nothing.
        if name not in ("keras", "tensorflow") or self.searching:
            return None
        self.searching = True
        try:
            spec = None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
        finally:
            self.searching = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        inner = spec.loader.exec_module
        adapter = self.adapter

        def exec_module(module: Any) -> None:
            with quiet_banners():
                inner(module)
            if getattr(module, "__name__", "") == "keras":
                adapter.keras_imported(module)

        with contextlib.suppress(AttributeError, TypeError):
            spec.loader.exec_module = exec_module
        return spec


_quiet_depth = 0


@contextlib.contextmanager
def quiet_banners() -> Iterator[None]:
    """Drop TensorFlow's start-up banners from stderr (fd 2) while TensorFlow loads.

    They are written by C++ before its logging honours TF_CPP_MIN_LOG_LEVEL, so the
    variable alone cannot hide them. Everything else written meanwhile is passed on
    afterwards. A user who sets TF_CPP_MIN_LOG_LEVEL to 0 or 1 gets everything.
    """
    global _quiet_depth  # noqa: PLW0603
    if _quiet_depth or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") in ("0", "1"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after fd 2 is back
    except (OSError, ValueError, AttributeError):
        yield
        return
    os.dup2(capture.fileno(), 2)
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
        capture.close()
        kept = [line for line in text.splitlines(keepends=True) if not _BANNER.match(line)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def pick_metric(names: Any, metric: str) -> str | None:
    """The name under which Keras logs ``metric``: itself, or its one alias (``acc``,
    ``sparse_categorical_accuracy``...). None when absent or ambiguous."""
    names = [n for n in names if not str(n).startswith("val_")]
    if metric in names:
        return metric
    aliases = [n for n in names if n.endswith("_" + metric) or (metric == "accuracy" and n == "acc")]
    return aliases[0] if len(aliases) == 1 else None


def _is_arrays(x: Any) -> bool:
    """Whether ``fit`` may be given a batch_size for ``x`` (arrays, not a dataset or generator)."""
    if isinstance(x, (list, tuple)):
        return bool(x) and all(_is_arrays(item) for item in x)
    if isinstance(x, dict):
        return bool(x) and all(_is_arrays(item) for item in x.values())
    return hasattr(x, "shape") and hasattr(x, "dtype")


class Adapter:
    """What the adapter knows and does in one training process."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.keras: Any = None
        self.read_epochs: bool | None = False
        self.off = False  # stepped aside (or not Keras 3): every call runs as written
        self.busy = False  # inside a call the adapter makes: the hooks pass through
        self.model: Any = None  # the model the adapter drives: the first one the script fits
        self.done = settings.initial_epoch if settings.resume_from else 0  # epochs the model has
        self.trained = 0  # epochs trained in this process
        self.restore_pending = bool(settings.resume_from)
        self.resumed = False
        self.restore = "no checkpoint offered" if not settings.resume_from else "pending"
        self.optimizer_restored: bool | None = None
        self.iterations_start: int | None = None
        self.fit_calls = 0
        self.continued = False
        self.history: dict[str, list[float]] = {}
        self.pending: tuple[Any, list[Any], Any] | None = None  # (arguments, callbacks, History)
        self.stopped_by: str | None = None  # "threshold", "deadline" or "a callback"
        self.epoch_started: float | None = None
        self.longest_epoch_s = 0.0  # with its save: the guess for the next epoch (deadline)
        self.evaluated: dict[str, float] | None = None
        self.fit_seconds = 0.0
        self.notes: list[str] = []
        self.applied: dict[str, Any] = {}
        self.metrics_digest: str | None = None
        self.foreign_metrics = False
        self.other_model_noted = False
        self.stop_at_threshold = self._threshold_stop_helps()
        self.saved_state: tuple[int, int] | None = None
        self.checkpoint: str | None = None
        self.fit_signature: Any = None
        self.originals: dict[str, Any] = {}

    def _threshold_stop_helps(self) -> bool:
        """Whether to stop once val_<metric> reaches the threshold.

        Not when the previous attempt stopped there and the script's own result (its
        evaluate) still fell short: val_<metric> is then no proxy for the result, and
        stopping again would train one epoch per attempt.
        """
        previous, threshold = self.s.previous, self.s.threshold
        if threshold is None:
            return False
        account = previous.get("adapter")
        stopped = isinstance(account, dict) and account.get("stopped_by") == "threshold"
        result = previous.get(self.s.metric)
        if stopped and isinstance(result, (int, float)) and result < threshold:
            say(f"in the previous attempt val_{self.s.metric} reached the threshold but the script's "
                f"{previous.get('metric_source', 'result')} did not ({result:.4f}): this attempt trains "
                "all its epochs.")
            return False
        return True

    def note(self, text: str) -> None:
        self.notes.append(text)
        say(text)

    # --- hooking -----------------------------------------------------------------------

    def keras_imported(self, keras: Any) -> None:
        """Patch Model's methods once Keras has loaded; never raise into the script's import."""
        try:
            version = str(getattr(keras, "__version__", "?"))
            if not version.startswith("3."):
                self.off = True
                say(f"Keras {version} is not Keras 3: the script runs as written.")
                return
            import inspect  # noqa: PLC0415 - only once Keras is there

            model_class = keras.Model
            self.keras = keras
            self.fit_signature = inspect.signature(model_class.fit)
            for name in HOOKED_METHODS:
                self.originals[name] = getattr(model_class, name)
                setattr(model_class, name, self._hook(name, self.originals[name]))
            atexit.register(self.at_exit, os.getpid())  # a forked child inherits it: see at_exit
        except Exception as exc:
            self.off = True
            say(f"could not hook Keras ({short(exc)}); the script runs as written.")

    def _hook(self, name: str, original: Any) -> Any:
        handler = getattr(self, "_on_" + name)

        @functools.wraps(original)
        def method(model: Any, *args: Any, **kwargs: Any) -> Any:
            if self.off or self.busy:
                return original(model, *args, **kwargs)
            return handler(original, model, args, kwargs)

        return method

    # --- fit -----------------------------------------------------------------------------

    def _on_fit(self, original: Any, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            bound = self.fit_signature.bind(model, *args, **kwargs)
        except TypeError:
            return original(model, *args, **kwargs)  # Keras reports the bad call itself
        arguments = bound.arguments  # only what the script passed: Keras keeps its own defaults
        if self.model is None:
            if self._follows_contract(arguments):
                self.off = True
                say("the script passes epochs=KT_EPOCHS and initial_epoch=KT_INITIAL_EPOCH itself: "
                    "stepping aside (adapt: auto).")
                return original(model, *args, **kwargs)
            self.model = model
        elif model is not self.model:
            if not self.other_model_noted:
                self.other_model_noted = True
                self.note("fit on another model runs as written; keeptraining drives the first model "
                          "the script trains.")
            return original(model, *args, **kwargs)
        self.pending = None  # this fit continues the timeline: no need to continue the earlier one
        callbacks = arguments.get("callbacks")
        user_callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else \
            ([] if callbacks is None else [callbacks])
        return self._train(original, model, bound, user_callbacks, history=None)

    def _follows_contract(self, arguments: dict[str, Any]) -> bool:
        if self.s.mode != "auto":
            return False
        try:
            epochs, initial = self._epochs(arguments)
        except (TypeError, ValueError):
            return False
        if (epochs, initial) != (self.s.epochs, self.s.initial_epoch):
            return False
        return initial > 0 or self.read_epochs is not False

    def _train(self, original: Any, model: Any, bound: Any, user_callbacks: list[Any],
               history: Any) -> Any:
        """Run one fit segment: from the model's epoch, the epochs asked, never past KT_EPOCHS."""
        arguments = bound.arguments
        if self.restore_pending and getattr(model, "built", False):
            self._restore(model)
        if self.fit_calls == 0 and not self.restore_pending:
            self._apply_learning_rate(model)
        epochs, initial = self._epochs(arguments)
        start = self.done
        end = max(min(start + max(epochs - initial, 0), self.s.epochs), start)
        if self.stopped_by == "deadline":
            end = start
            say(f"fit(epochs={epochs}) trains no epoch: this run's time is up (KT_DEADLINE).")
        elif end == start and (self.fit_calls == 0 or (epochs, initial) != (end, start)):
            say(f"fit(epochs={epochs}) trains no epoch (KT_EPOCHS={self.s.epochs}, the model has {start}).")
        elif self.fit_calls == 0 or (epochs, initial) != (end, start):
            say(f"fit(epochs={epochs}) trains epochs {start + 1} to {end} "
                f"(KT_EPOCHS={self.s.epochs}, the model has {start}).")
        arguments["initial_epoch"], arguments["epochs"] = start, end
        arguments["verbose"] = self._verbose(arguments.get("verbose", "auto"))
        if self.s.batch_size and arguments.get("batch_size") != self.s.batch_size \
                and _is_arrays(arguments.get("x")):
            arguments["batch_size"] = self.s.batch_size
            self.applied["batch_size"] = self.s.batch_size
        ours = self._callbacks()  # [restore, record, threshold, clock]
        arguments["callbacks"] = ours[:1] + user_callbacks + ([history] if history is not None else []) \
            + ours[1:]
        self.fit_calls += 1
        self.busy = True
        started = time.perf_counter()
        try:
            result = original(*bound.args, **bound.kwargs)
        finally:
            self.busy = False
            self.fit_seconds += time.perf_counter() - started
        stopped = bool(getattr(model, "stop_training", False))
        if stopped and self.stopped_by is None:
            self.stopped_by = "a callback"
        if self.done < self.s.epochs and not stopped:
            self.pending = (bound, user_callbacks, result)
        self.write_outputs()
        return result

    def _epochs(self, arguments: dict[str, Any]) -> tuple[int, int]:
        """(epochs, initial_epoch) as the script passed them, Keras's defaults otherwise."""
        defaults = self.fit_signature.parameters
        epochs = arguments.get("epochs", defaults["epochs"].default)
        initial = arguments.get("initial_epoch", defaults["initial_epoch"].default)
        return int(epochs), int(initial or 0)

    def _verbose(self, verbose: Any) -> Any:
        """One line per epoch where nobody watches a progress bar (CI logs, pipes)."""
        interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        if verbose in ("auto", 1) and not interactive:
            return 2
        return verbose

    def continue_training(self) -> None:
        """Continue the script's last fit up to KT_EPOCHS before the model is used or saved."""
        if self.pending is None or self.stopped_by == "deadline":  # a deadline stop is the run's end
            return
        bound, user_callbacks, history = self.pending
        self.pending = None
        self.continued = True
        say(f"the script's fit calls stopped at epoch {self.done}, short of KT_EPOCHS={self.s.epochs}: "
            f"continuing its last fit to epoch {self.s.epochs}.")
        bound.arguments["initial_epoch"], bound.arguments["epochs"] = self.done, self.s.epochs
        self._train(self.originals["fit"], self.model, bound, user_callbacks, history)

    # --- callbacks -------------------------------------------------------------------

    def _callbacks(self) -> list[Any]:
        """[restore (first, so the script's callbacks see the restored model), record, threshold]."""
        base = self.keras.callbacks.Callback
        adapter = self

        class Restore(base):  # type: ignore[misc,valid-type]
            def on_train_begin(self, logs: Any = None) -> None:
                if adapter.restore_pending:
                    adapter._restore(self.model)
                    if adapter.fit_calls <= 1:
                        adapter._apply_learning_rate(self.model)

        class Record(base):  # type: ignore[misc,valid-type]
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                adapter.done += 1
                adapter.trained += 1
                for key, value in (logs or {}).items():
                    with contextlib.suppress(TypeError, ValueError):
                        adapter.history.setdefault(str(key), []).append(float(value))

        class StopAtThreshold(base):  # type: ignore[misc,valid-type]
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                logs = logs or {}
                key = pick_metric(logs, adapter.s.metric)
                value = logs.get(f"val_{key}") if key else None
                if not adapter.stop_at_threshold or value is None or float(value) < adapter.s.threshold:
                    return
                adapter.stopped_by = "threshold"
                self.model.stop_training = True
                say(f"val_{key} {float(value):.4f} >= threshold {adapter.s.threshold:g} at epoch "
                    f"{adapter.done}: stopping.")

        class Clock(base):  # type: ignore[misc,valid-type]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                adapter.epoch_started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                adapter.epoch_ended(self.model)

        return [Restore(), Record(), StopAtThreshold(), Clock()]

    def epoch_ended(self, model: Any) -> None:
        """Save what the epoch trained, then stop if the next epoch would not end before KT_DEADLINE."""
        began = self.epoch_started if self.epoch_started is not None else time.monotonic()
        self.write_outputs()
        self.longest_epoch_s = max(self.longest_epoch_s, time.monotonic() - began)
        if self.s.deadline is None or getattr(model, "stop_training", False) or self.done >= self.s.epochs:
            return
        left = self.s.deadline - time.time()
        if left >= self.longest_epoch_s:
            return
        self.stopped_by = "deadline"
        model.stop_training = True
        say(f"stopping after epoch {self.done}: the next epoch would end after this run's deadline "
            f"(KT_DEADLINE, {max(left, 0):.0f} s left; an epoch takes up to {self.longest_epoch_s:.1f} s). "
            "The next run goes on from here.")

    # --- resume ----------------------------------------------------------------------

    def _restore(self, model: Any) -> None:
        """Load KT_RESUME_FROM's weights and optimizer state into the script's own model."""
        self.restore_pending = False
        path = self.s.resume_from
        optimizer = getattr(model, "optimizer", None)
        try:
            if optimizer is not None and not optimizer.built:
                optimizer.build(model.trainable_variables)  # its variables must exist to be loaded
            variables = list(model.weights) + (list(optimizer.variables) if optimizer is not None else [])
            snapshot = [v.numpy() for v in variables]
        except Exception as exc:
            self._restore_failed(path, exc, [], [])
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.load_weights(path)
            except Exception as exc:
                self._restore_failed(path, exc, variables, snapshot)
                return
        skipped = [w for w in caught if _OPTIMIZER_SKIPPED in str(w.message)]
        for other in caught:
            if other not in skipped:
                warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
        self.resumed = True
        self.optimizer_restored = optimizer is not None and not skipped
        self.iterations_start = _iterations(model)
        self.restore = "weights and optimizer state" if self.optimizer_restored else "weights only"
        extra = (f", optimizer at step {self.iterations_start}" if self.optimizer_restored else
                 "; the optimizer starts afresh (the script's optimizer differs from the checkpoint's)")
        say(f"resumed {os.path.basename(path)} at epoch {self.done}: weights{extra}.")

    def _restore_failed(self, path: str, exc: BaseException, variables: list[Any],
                        snapshot: list[Any]) -> None:
        for variable, value in zip(variables, snapshot):  # noqa: B905 - Python 3.9 images: no strict=
            with contextlib.suppress(Exception):
                variable.assign(value)
        self.done = 0
        self.resumed = False
        self.restore = f"failed: {short(exc)}"
        self.note(f"cannot resume from {os.path.basename(path)} ({short(exc)}): the checkpoint does not "
                  "fit this model (did the architecture change?). Training starts from scratch; this "
                  "attempt is recorded as not resumed.")

    def _apply_learning_rate(self, model: Any) -> None:
        if self.s.learning_rate is None or getattr(model, "optimizer", None) is None:
            return
        try:
            model.optimizer.learning_rate = self.s.learning_rate
            self.applied["learning_rate"] = self.s.learning_rate
        except Exception as exc:  # a LearningRateSchedule cannot be overwritten with a number
            self.note(f"KT_HP_LEARNING_RATE not applied ({short(exc)}).")

    # --- evaluate, predict, save: the script uses the model -----------------------------

    def _on_evaluate(self, original: Any, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if model is not self.model or kwargs.get("_use_cached_eval_dataset"):
            return original(model, *args, **kwargs)
        self.continue_training()
        self.busy = True
        try:
            result = original(model, *args, **kwargs)
        finally:
            self.busy = False
        try:
            self.evaluated = {str(k): float(v) for k, v in model.get_metrics_result().items()
                              if _is_scalar(v)}
        except Exception as exc:
            self.note(f"could not read the evaluate result ({short(exc)}).")
        self.write_outputs()
        return result

    def _on_predict(self, original: Any, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if model is self.model:
            self.continue_training()
        return original(model, *args, **kwargs)

    def _on_save(self, original: Any, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if model is self.model:
            self.continue_training()
        return original(model, *args, **kwargs)

    _on_save_weights = _on_save

    def at_exit(self, registered_in: int | None = None) -> None:
        # Only in the process that registered it: a child of os.fork() inherits the handler, and
        # training there (TensorFlow's threads did not survive the fork) deadlocks the child and
        # leaves the parent waiting for it until the timeout.
        if registered_in is not None and os.getpid() != registered_in:
            return
        if self.off or self.model is None:
            return
        try:
            self.continue_training()
            self.write_outputs()
        except Exception as exc:
            say(f"could not finish at exit ({short(exc)}).")

    # --- outputs -------------------------------------------------------------------------

    def write_outputs(self) -> None:
        """Save the model (when it changed) and metrics.json, atomically, into KT_OUTPUT_DIR."""
        if self.model is None:
            return
        try:
            os.makedirs(self.s.output_dir, exist_ok=True)
            if self.saved_state != (self.done, self.fit_calls):
                self.checkpoint = self._save_model()
                self.saved_state = (self.done, self.fit_calls)
            report = self.report()
            if report is not None:
                self._write_metrics(report)
        except Exception as exc:
            self.note(f"could not write to KT_OUTPUT_DIR ({short(exc)}).")

    def _save_model(self) -> str | None:
        out, tag = self.s.output_dir, f".{os.getpid()}"
        self.busy = True
        try:
            tmp = os.path.join(out, f".model{tag}.keras")  # Keras insists on the suffix
            try:
                self.model.save(tmp)
                os.replace(tmp, os.path.join(out, CHECKPOINT))
                return CHECKPOINT
            except Exception as exc:
                text = (f"model.save failed ({short(exc)}); saving the weights and optimizer state "
                        f"as {WEIGHTS_ONLY} instead.")
                if text not in self.notes:  # said once, not at every epoch end
                    self.note(text)
            tmp = os.path.join(out, f".model{tag}.weights.h5")
            self.model.save_weights(tmp)
            os.replace(tmp, os.path.join(out, WEIGHTS_ONLY))
            return WEIGHTS_ONLY
        finally:
            self.busy = False
            for leftover in (f".model{tag}.keras", f".model{tag}.weights.h5"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(out, leftover))

    def metric(self) -> tuple[float, str] | None:
        """(value, source): the last evaluate, else the last val_<metric>, else the training metric."""
        name = self.s.metric
        if self.evaluated:
            key = pick_metric(self.evaluated, name)
            if key is not None:
                return self.evaluated[key], "evaluate"
        key = pick_metric(self.history, name)
        if key is not None and self.history.get(f"val_{key}"):
            return self.history[f"val_{key}"][-1], f"val_{key}"
        if key is not None and self.history.get(key):
            return self.history[key][-1], f"{key} (training)"
        return None

    def report(self) -> dict[str, Any] | None:
        found = self.metric()
        if found is None:
            seen = sorted(set(self.history) | set(self.evaluated or {}))
            text = (f"the model reports no {self.s.metric} (it logs: {', '.join(seen)[:200]}); "
                    f"compile it with metrics=['{self.s.metric}'] or set `metric` to one of those."
                    if seen else
                    f"the model reports no {self.s.metric}: it trained no epoch and evaluated nothing "
                    "(fit with epochs=0?); train at least one epoch, or evaluate the model.")
            if text not in self.notes:
                self.note(text)
            return None
        value, source = found
        return {
            self.s.metric: value, "metric": self.s.metric, "metric_source": source,
            "epochs": self.done, "initial_epoch": self.s.initial_epoch if self.resumed else 0,
            "resumed": self.resumed,
            "early_stopped": self.done < self.s.epochs and self.stopped_by not in (None, "deadline"),
            "stopped": "deadline" if self.stopped_by == "deadline" else None,
            "history": self.history, "checkpoint": self.checkpoint,
            "timings": {"fit_s": round(self.fit_seconds, 3)},
            "adapter": {
                "mode": self.s.mode, "fit_calls": self.fit_calls, "continued": self.continued,
                "stopped_by": self.stopped_by, "resume": self.restore,
                "optimizer_restored": self.optimizer_restored,
                "optimizer_iterations": {"start": self.iterations_start, "end": _iterations(self.model)},
                "hyperparameters": dict(self.applied), "notes": list(self.notes),
            },
        }

    def _write_metrics(self, report: dict[str, Any]) -> None:
        path = os.path.join(self.s.output_dir, METRICS_FILE)
        if self.foreign_metrics or self._written_by_script(path):
            return
        text = json.dumps(report, indent=2) + "\n"
        tmp = os.path.join(self.s.output_dir, f".metrics.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.metrics_digest = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _written_by_script(self, path: str) -> bool:
        """True (and noted once) when metrics.json is there and not the adapter's own."""
        if not os.path.lexists(path):
            return False
        digest = None
        with contextlib.suppress(OSError):
            if os.path.isfile(path) and os.path.getsize(path) <= MAX_FOREIGN_METRICS_BYTES:
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
        if digest is not None and digest == self.metrics_digest:
            return False
        self.foreign_metrics = True
        say("the script writes metrics.json itself: keeptraining reads the script's file.")
        return True


def _iterations(model: Any) -> int | None:
    try:
        return int(model.optimizer.iterations.numpy())
    except Exception:
        return None


def _is_scalar(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
