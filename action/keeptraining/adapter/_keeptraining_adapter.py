"""keeptraining's Keras adapter: an unmodified Keras script follows the training contract.

Runs inside the training process (loaded by this folder's ``sitecustomize.py``), in
whatever Python the training image has: standard library only, and Keras once the
script itself has imported it (the adapter never imports TensorFlow or Keras: that
would cost every script two seconds, even one that never trains).

What it does, once the script imports Keras 3 (``keras`` or ``tf.keras`` on TF >= 2.16):

* ``Model.fit`` trains the model to ``KT_EPOCHS``, from ``KT_INITIAL_EPOCH``, whatever
  ``epochs`` the script passed. A script that trains its model with *one* ``fit`` gets one
  continuous Keras run (``Epoch 11/20`` ... ``Epoch 20/20``; its History holds every epoch).
  A script with several (warm-up, then main) keeps the one-timeline rule: each trains the
  epochs it asks for, from where the model is, and none goes past ``KT_EPOCHS``; if the
  script's fit calls end below ``KT_EPOCHS``, the last one is continued to ``KT_EPOCHS``
  before the script uses the model (``evaluate``, ``predict``, ``save``) or exits. Which
  case applies is decided at the first fit: the previous attempt's count of the script's
  fit calls, else the calling file's source (one ``<model>.fit(`` call on that receiver,
  outside any loop, is one fit). A stop asked by a callback (the threshold, the script's
  own ``EarlyStopping``) is respected and never continued.
* Before the first ``fit`` it restores ``KT_RESUME_FROM`` into the script's own model:
  weights and optimizer variables (moments, ``iterations``), the way Keras's
  ``BackupAndRestore`` does; a model without weights yet (a subclass, a custom ``train_step``,
  no ``Input``) is first built symbolically from the first batch. A checkpoint that does not
  fit the model is reported, any
  half-loaded weights are put back, and training starts from scratch.
* It stops the training once ``val_<KT_METRIC>`` reaches ``KT_THRESHOLD``; the script's
  callbacks keep working, and the state of Keras's stateful ones (``EarlyStopping``'s and
  ``ReduceLROnPlateau``'s best value and wait, ``ModelCheckpoint``'s best) is carried from
  attempt to attempt in ``metrics.json``. An ``EarlyStopping`` that fires ends the chain:
  ``metrics.json`` says ``"stopped": "early_stopping"``. ``KT_HP_LEARNING_RATE`` and
  ``KT_HP_BATCH_SIZE`` are applied.
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
import math
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
CONTRACT_VARIABLES = (
    "KT_EPOCHS",
    "KT_INITIAL_EPOCH",
    "KT_RESUME_FROM",
    "KT_THRESHOLD",
    "KT_METRIC",
    "KT_OUTPUT_DIR",
    "KT_HP_",
    "KT_DEADLINE",
    "KT_CACHE_DIR",
    "KT_ADAPT",
    "KT_ATTEMPT",
)
# What TensorFlow prints to stderr before its logging is set up, whatever TF_CPP_MIN_LOG_LEVEL says.
_BANNER = re.compile(
    r"^(?:I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)
_OPTIMIZER_SKIPPED = "Skipping variable loading for optimizer"
# Keras's built-in callbacks whose state spans epochs: carried from attempt to attempt with the
# checkpoint (in metrics.json), the way BackupAndRestore carries the epoch.
CARRIED_STATE = {
    "EarlyStopping": ("wait", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
    "ModelCheckpoint": ("best",),
}
EARLY_STOPPING = "early_stopping"  # metrics.json "stopped": the script's own EarlyStopping ended the training

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
        self.script_fits = 0  # the script's own fit calls on its model (fit_calls adds continuations)
        self.one_run: bool | None = None  # decided at the first fit: one continuous Keras run to KT_EPOCHS
        self.one_run_why = ""
        self.continued = False
        self.history: dict[str, list[float]] = {}
        self.pending: tuple[Any, list[Any], Any] | None = None  # (arguments, callbacks, History)
        self.stopped_by: str | None = None  # "threshold", "deadline", "EarlyStopping" or "a callback"
        self.user_callbacks: list[Any] = []  # the script's callbacks of its latest fit
        self.carried: list[str] = []  # the callbacks whose state came from the previous attempt
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
        if isinstance(account, dict) and account.get("threshold_stop") is False:
            return False  # found to be no proxy in an earlier attempt: never again in this chain
        stopped = isinstance(account, dict) and account.get("stopped_by") == "threshold"
        result = previous.get(self.s.metric)
        if stopped and isinstance(result, (int, float)) and result < threshold:
            say(
                f"in the previous attempt val_{self.s.metric} reached the threshold but the script's "
                f"{previous.get('metric_source', 'result')} did not ({result:.4f}): this attempt trains "
                "all its epochs."
            )
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
                say(
                    "the script passes epochs=KT_EPOCHS and initial_epoch=KT_INITIAL_EPOCH itself: "
                    "stepping aside (adapt: auto)."
                )
                return original(model, *args, **kwargs)
            self.model = model
            self.one_run, self.one_run_why = self._one_fit(arguments)
        elif model is not self.model:
            if not self.other_model_noted:
                self.other_model_noted = True
                self.note(
                    "fit on another model runs as written; keeptraining drives the first model "
                    "the script trains."
                )
            return original(model, *args, **kwargs)
        self.pending = None  # this fit continues the timeline: no need to continue the earlier one
        self.script_fits += 1
        callbacks = arguments.get("callbacks")
        user_callbacks = (
            list(callbacks)
            if isinstance(callbacks, (list, tuple))
            else ([] if callbacks is None else [callbacks])
        )
        return self._train(original, model, bound, user_callbacks, history=None)

    def resumed_or_pending(self) -> bool:
        return self.resumed or self.restore_pending

    def _one_fit(self, arguments: dict[str, Any]) -> tuple[bool, str]:
        """Whether the script trains its model with one fit call (then that fit is one Keras run to
        KT_EPOCHS) or with several (warm-up, then main: each trains its own epochs, one timeline).

        Told apart, in this order: the previous attempt's count of the script's fit calls (the same
        code, run to its end); else the calling file itself: one ``<receiver>.fit(`` call on that
        receiver, in no loop, is one fit. Anything unclear keeps the one-timeline rule.
        """
        account = self.s.previous.get("adapter")
        counted = account.get("script_fit_calls") if isinstance(account, dict) else None
        if isinstance(counted, int) and counted >= 1 and not isinstance(counted, bool):
            if counted == 1:
                return True, "the script's one fit call, as counted in the previous attempt"
            return False, f"{counted} fit calls in the previous attempt"
        try:
            found = _fit_call_sites(_caller_frame())
        except Exception:
            return False, "the script's fit calls could not be read"
        if found is None:
            return False, "the script's fit calls could not be read"
        sites, in_loop, receiver = found
        if sites == 1 and not in_loop:
            return True, f"the script's one {receiver}.fit call"
        return False, f"{sites} fit calls on {receiver}" + (", in a loop" if in_loop else "")

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

    def _train(self, original: Any, model: Any, bound: Any, user_callbacks: list[Any], history: Any) -> Any:
        """Run one fit segment: from the model's epoch, the epochs asked, never past KT_EPOCHS."""
        arguments = bound.arguments
        if not _fully_built(model):  # to resume, and to save: Keras saves no unbuilt model
            self._build(model, arguments)
        if self.restore_pending and _fully_built(model):
            self._restore(model)
        if self.fit_calls == 0 and not self.restore_pending:
            self._apply_learning_rate(model)
        epochs, initial = self._epochs(arguments)
        start = self.done
        end = max(min(start + max(epochs - initial, 0), self.s.epochs), start)
        if self.one_run and self.fit_calls == 0:
            end = max(self.s.epochs, start)
        if self.stopped_by == "deadline":
            end = start
        self._say_segment(epochs, initial, start, end)
        arguments["initial_epoch"], arguments["epochs"] = start, end
        arguments["verbose"] = self._verbose(arguments.get("verbose", "auto"))
        if (
            self.s.batch_size
            and arguments.get("batch_size") != self.s.batch_size
            and _is_arrays(arguments.get("x"))
        ):
            arguments["batch_size"] = self.s.batch_size
            self.applied["batch_size"] = self.s.batch_size
        self.user_callbacks = list(user_callbacks)
        ours = self._callbacks()  # [restore, record, threshold, clock]
        arguments["callbacks"] = (
            ours[:1] + user_callbacks + ([history] if history is not None else []) + ours[1:]
        )
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
            fired = [
                cb
                for cb in user_callbacks
                if self._carried_class(cb) == "EarlyStopping"
                and int(getattr(cb, "stopped_epoch", 0) or 0) > 0
            ]
            self.stopped_by = "EarlyStopping" if fired else "a callback"
        if self.done < self.s.epochs and not stopped:
            self.pending = (bound, user_callbacks, result)
        self.write_outputs()
        return result

    def _say_segment(self, epochs: int, initial: int, start: int, end: int) -> None:
        """What this fit trains, said when it is not what the script asked."""
        if self.stopped_by == "deadline":
            say(f"fit(epochs={epochs}) trains no epoch: this run's time is up (KT_DEADLINE).")
        elif self.fit_calls == 0 and self.resumed_or_pending() and start >= self.s.epochs:
            say(
                f"fit(epochs={epochs}) trains no epoch: evaluate only (KT_EPOCHS={self.s.epochs} = "
                "KT_INITIAL_EPOCH, the checkpoint is measured as it is)."
            )
        elif end == start and (self.fit_calls == 0 or (epochs, initial) != (end, start)):
            say(f"fit(epochs={epochs}) trains no epoch (KT_EPOCHS={self.s.epochs}, the model has {start}).")
        elif self.one_run and self.fit_calls == 0:
            say(
                f"fit(epochs={epochs}) trains epochs {start + 1} to {end} in one run "
                f"(KT_EPOCHS={self.s.epochs}, the model has {start}; {self.one_run_why})."
            )
        elif self.fit_calls == 0 or (epochs, initial) != (end, start):
            say(
                f"fit(epochs={epochs}) trains epochs {start + 1} to {end} "
                f"(KT_EPOCHS={self.s.epochs}, the model has {start})."
            )

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
        say(
            f"the script's fit calls stopped at epoch {self.done}, short of KT_EPOCHS={self.s.epochs}: "
            f"continuing its last fit to epoch {self.s.epochs}."
        )
        bound.arguments["initial_epoch"], bound.arguments["epochs"] = self.done, self.s.epochs
        self._train(self.originals["fit"], self.model, bound, user_callbacks, history)

    # --- callbacks -------------------------------------------------------------------

    def _callbacks(self) -> list[Any]:
        """[restore (first, so the script's callbacks see the restored model), record, threshold]."""
        base = self.keras.callbacks.Callback
        adapter = self

        class Restore(base):  # type: ignore[misc,valid-type]
            def on_train_begin(self, logs: Any = None) -> None:
                if adapter.restore_pending and _fully_built(self.model):
                    self.restore()

            def restore(self) -> None:
                adapter._restore(self.model)
                if adapter.fit_calls <= 1:
                    adapter._apply_learning_rate(self.model)

        class LateRestore(Restore):  # only when the model could not be built before fit
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                # Not built before the first step (a generator the adapter cannot peek at):
                # restore now, over that one step, whose update is discarded (the step counter too).
                if adapter.restore_pending:
                    adapter.note(
                        "the model had no weights before its first training step (its data is "
                        "a generator): the checkpoint was loaded after that step, whose update "
                        "is discarded. Build the model before fit (model(x[:1])) to avoid this."
                    )
                    self.restore()

        class Record(base):  # type: ignore[misc,valid-type]
            def on_train_begin(self, logs: Any = None) -> None:
                # After the script's callbacks reset themselves (they come before this one).
                if adapter.fit_calls == 1 and adapter.resumed:
                    adapter.carry_callback_state()

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
                say(
                    f"val_{key} {float(value):.4f} >= threshold {adapter.s.threshold:g} at epoch "
                    f"{adapter.done}: stopping."
                )

        class Clock(base):  # type: ignore[misc,valid-type]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                adapter.epoch_started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                adapter.epoch_ended(self.model)

        late = self.restore_pending and self.model is not None and not _fully_built(self.model)
        return [LateRestore() if late else Restore(), Record(), StopAtThreshold(), Clock()]

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
        say(
            f"stopping after epoch {self.done}: the next epoch would end after this run's deadline "
            f"(KT_DEADLINE, {max(left, 0):.0f} s left; an epoch takes up to {self.longest_epoch_s:.1f} s). "
            "The next run goes on from here."
        )

    # --- the script's stateful callbacks, across attempts --------------------------------

    def _carried_class(self, callback: Any) -> str | None:
        for name in CARRIED_STATE:
            kind = getattr(self.keras.callbacks, name, None)
            if kind is not None and isinstance(callback, kind):
                return name
        return None

    def _callback_keys(self) -> list[tuple[Any, str, str, int]]:
        """(callback, class, monitor, ordinal among the same class and monitor) of the script's
        carried callbacks, in the order the script passed them: how attempts match them up."""
        seen: dict[tuple[str, str], int] = {}
        keys = []
        for callback in self.user_callbacks:
            name = self._carried_class(callback)
            if name is None:
                continue
            monitor = str(getattr(callback, "monitor", ""))
            ordinal = seen.get((name, monitor), 0)
            seen[(name, monitor)] = ordinal + 1
            keys.append((callback, name, monitor, ordinal))
        return keys

    def callback_states(self) -> list[dict[str, Any]]:
        """The carried state of the script's callbacks, for metrics.json (finite numbers only)."""
        states = []
        for callback, name, monitor, ordinal in self._callback_keys():
            state: dict[str, Any] = {}
            for attribute in CARRIED_STATE[name]:
                value = getattr(callback, attribute, None)
                with contextlib.suppress(TypeError, ValueError):
                    number = None if value is None else float(value)
                    if number is None or math.isfinite(number):
                        state[attribute] = number if attribute == "best" or number is None else int(number)
            states.append({"class": name, "monitor": monitor, "ordinal": ordinal, "state": state})
        return states

    def carry_callback_state(self) -> None:
        """Give the script's callbacks the state they had at the end of the previous attempt."""
        previous = self.s.previous.get("callbacks")
        if not isinstance(previous, list):
            return
        index = {
            (p.get("class"), p.get("monitor"), p.get("ordinal")): p.get("state")
            for p in previous
            if isinstance(p, dict)
        }
        for callback, name, monitor, ordinal in self._callback_keys():
            state = index.get((name, monitor, ordinal))
            if not isinstance(state, dict):
                continue
            for attribute in CARRIED_STATE[name]:
                value = state.get(attribute)
                if attribute in state and (value is None or isinstance(value, (int, float))):
                    setattr(callback, attribute, value)
            self.carried.append(f"{name}({monitor})")
        if self.carried:
            say(
                f"carried on from the previous attempt: {', '.join(self.carried)} "
                "(their best value and how long they have waited)."
            )

    # --- resume ----------------------------------------------------------------------

    def _build(self, model: Any, arguments: dict[str, Any]) -> None:
        """Create the weights of a model that has none yet, so that the checkpoint can be loaded.

        A ``keras.Model`` subclass (custom ``call`` or ``train_step``) and a Sequential or
        functional model without an ``Input`` create their weights lazily, inside the first
        training step, after every callback's ``on_train_begin`` (and a model whose own
        ``train_step`` never calls it stays "unbuilt", which ``save`` refuses). The adapter builds them the
        way Keras does under a distribution strategy: symbolically, from the shape of the first
        batch (nothing is trained or counted), before the optimizer is built for them.
        """
        try:
            batch = _first_batch(arguments.get("x"), arguments.get("y"))
        except Exception as exc:
            say(f"could not read a first batch to build the model before resuming ({short(exc)}).")
            return
        if batch is None:
            return  # a generator: peeking would consume a batch; resume once the model is built
        try:
            build = getattr(model, "_symbolic_build", None)
            if build is not None:
                build(data_batch=batch)
            else:
                model(batch[0])
        except Exception as exc:
            say(f"could not build the model from its first batch before resuming ({short(exc)}).")

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
        extra = (
            f", optimizer at step {self.iterations_start}"
            if self.optimizer_restored
            else "; the optimizer starts afresh (the script's optimizer differs from the checkpoint's)"
        )
        say(f"resumed {os.path.basename(path)} at epoch {self.done}: weights{extra}.")

    def _restore_failed(
        self, path: str, exc: BaseException, variables: list[Any], snapshot: list[Any]
    ) -> None:
        for variable, value in zip(variables, snapshot):  # noqa: B905 - Python 3.9 images: no strict=
            with contextlib.suppress(Exception):
                variable.assign(value)
        self.done = 0
        self.resumed = False
        self.restore = f"failed: {short(exc)}"
        self.note(
            f"cannot resume from {os.path.basename(path)} ({short(exc)}): the checkpoint does not "
            "fit this model (did the architecture change?). Training starts from scratch; this "
            "attempt is recorded as not resumed."
        )

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
            self.evaluated = {
                str(k): float(v) for k, v in model.get_metrics_result().items() if _is_scalar(v)
            }
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
                text = (
                    f"model.save failed ({short(exc)}); saving the weights and optimizer state "
                    f"as {WEIGHTS_ONLY} instead."
                )
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
            text = (
                f"the model reports no {self.s.metric} (it logs: {', '.join(seen)[:200]}); "
                f"compile it with metrics=['{self.s.metric}'] or set `metric` to one of those."
                if seen
                else f"the model reports no {self.s.metric}: it trained no epoch and evaluated nothing "
                "(fit with epochs=0?); train at least one epoch, or evaluate the model."
            )
            if text not in self.notes:
                self.note(text)
            return None
        value, source = found
        return {
            self.s.metric: value,
            "metric": self.s.metric,
            "metric_source": source,
            "epochs": self.done,
            "initial_epoch": self.s.initial_epoch if self.resumed else 0,
            "resumed": self.resumed,
            "early_stopped": self.done < self.s.epochs and self.stopped_by not in (None, "deadline"),
            "stopped": {"deadline": "deadline", "EarlyStopping": EARLY_STOPPING}.get(self.stopped_by or ""),
            "history": self.history,
            "checkpoint": self.checkpoint,
            "callbacks": self.callback_states(),
            "timings": {"fit_s": round(self.fit_seconds, 3)},
            "adapter": {
                "mode": self.s.mode,
                "fit_calls": self.fit_calls,
                "script_fit_calls": self.script_fits,
                "one_run": self.one_run,
                "continued": self.continued,
                "stopped_by": self.stopped_by,
                "resume": self.restore,
                "callbacks_carried": list(self.carried),
                "threshold_stop": self.stop_at_threshold,
                "optimizer_restored": self.optimizer_restored,
                "optimizer_iterations": {"start": self.iterations_start, "end": _iterations(self.model)},
                "hyperparameters": dict(self.applied),
                "notes": list(self.notes),
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


_FIT_NAMES = ("fit", "fit_generator")


def _caller_frame() -> Any:
    """The frame that called ``Model.fit``: the first one outside this file."""
    frame: Any = sys._getframe(1)
    here = os.path.normcase(os.path.abspath(__file__))
    while frame is not None and os.path.normcase(os.path.abspath(frame.f_code.co_filename)) == here:
        frame = frame.f_back
    return frame


def _fit_call_sites(frame: Any) -> tuple[int, bool, str] | None:
    """(fit calls on the same receiver in the caller's file, whether the calling one is in a loop,
    the receiver as written), read from the source; None when it cannot be read."""
    import ast  # noqa: PLC0415 - only at the first fit

    path = frame.f_code.co_filename if frame is not None else ""
    if not path or not os.path.isfile(path) or os.path.getsize(path) > 2 * 1024 * 1024:
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        tree = ast.parse(fh.read())
    line = frame.f_lineno
    calls: list[tuple[ast.Call, bool]] = []

    def visit(node: ast.AST, in_loop: bool) -> None:
        for child in ast.iter_child_nodes(node):
            looping = in_loop or (isinstance(node, (ast.For, ast.While, ast.AsyncFor)) and child in node.body)
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in _FIT_NAMES
            ):
                calls.append((child, looping))
            visit(child, looping)

    visit(tree, False)
    calling = [
        (call, loop) for call, loop in calls if call.lineno <= line <= (call.end_lineno or call.lineno)
    ]
    if len(calling) != 1:
        return None
    call, in_loop = calling[0]
    assert isinstance(call.func, ast.Attribute)
    receiver = ast.unparse(call.func.value)
    sites = sum(
        1
        for other, _ in calls
        if isinstance(other.func, ast.Attribute) and ast.unparse(other.func.value) == receiver
    )
    return sites, in_loop, receiver


def _fully_built(model: Any) -> bool:
    """Whether every layer of the model has its weights (a subclassed model's, after its first call)."""
    try:
        layers = list(model._flatten_layers())
        return bool(getattr(model, "built", False)) and all(layer.built for layer in layers)
    except Exception:
        return bool(getattr(model, "built", False))


def _first_batch(x: Any, y: Any) -> tuple[Any, Any, Any] | None:
    """(x, y, None) of fit's first batch, without consuming the script's data; None for a generator."""
    if x is None:
        return None
    if _is_arrays(x):

        def head(value: Any) -> Any:
            if isinstance(value, (list, tuple)):
                return type(value)(head(item) for item in value)
            if isinstance(value, dict):
                return {key: head(item) for key, item in value.items()}
            return value[:1]

        return head(x), (head(y) if y is not None and _is_arrays(y) else None), None
    if hasattr(x, "take") and hasattr(x, "element_spec"):  # a tf.data.Dataset: a fresh iterator
        batch = next(iter(x.take(1)))
    elif hasattr(x, "__getitem__") and hasattr(x, "num_batches"):  # a keras.utils.PyDataset
        batch = x[0]
    else:
        return None
    if isinstance(batch, tuple):
        batch = tuple(batch) + (None,) * (3 - len(batch))
        return batch[0], batch[1], batch[2]
    return batch, None, None


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
