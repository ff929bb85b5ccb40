"""The data cache: what the training script downloads, kept from attempt to attempt.

Libraries keep their downloads in folders named by environment variables (``KERAS_HOME``,
``XDG_CACHE_HOME``, ``HF_HOME``, ``TORCH_HOME``, ...). Both backends point those that are not
already set into the cache's ``data`` folder (the docker backend mounts it at
``/workspace/cache``; ``HOME`` is an empty tmpfs there), and ``KT_CACHE_DIR`` names it, so that
attempt 2 finds what attempt 1 downloaded.

Where it lives (``folder``): locally ``<state_dir>/data-cache`` (successive chains share it);
on GitHub ``$RUNNER_TOOL_CACHE/keeptraining-data/<owner>/<repo>/<commit>``, one folder per chain,
which the action restores before the attempt and saves after it with ``actions/cache``, keyed by
the chain's commit (``plan``). It is never part of the chain-state artifact.

The folder::

    manifest.json   keeptraining's record of every file (size, sha256) and link; the script never
                    sees it (only data/ is mounted)
    data/           the libraries' folders: keras/, xdg/, huggingface/, torch/, ...
    .in-use         there while an attempt uses the cache; left behind only by a killed process

A cache is not trusted: before each attempt every recorded file is checked against the manifest,
and a cache that does not match (a file missing, changed or cut short, a changed link, an
unreadable manifest) is discarded with a warning, so the script downloads again. Files the manifest
does not know are kept (put there by hand: pre-seeded), unless the last attempt was cut off, when
they may be half written and are removed. After the attempt the manifest is written again; files
a timed-out or interrupted training created or changed are removed first. A link that leaves the
cache (judged by where it resolves on this machine, through the other links, not by its text
alone), a FIFO or a device, and a file or a link's target that holds one of keeptraining's secrets
(the token, the SMTP password, the registry password) are removed with a warning and never saved;
setuid/setgid bits are dropped. The manifest is never read through a link or from a FIFO, and
``.in-use`` is never written through one. A problem with the cache never fails an attempt: it
trains without the cache, and says so.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeptraining.config.settings import Config
from keeptraining.contract import env as kt_env
from keeptraining.errors import PathRefused
from keeptraining.output import workflow_commands as gha
from keeptraining.state import safe_paths

CACHE_MOUNT = "/workspace/cache"  # where the docker backend mounts the data folder
#: Where libraries keep their downloads: each variable not already set points into the data folder.
LIBRARY_DIRS = {
    "KERAS_HOME": "keras",  # keras.utils.get_file, keras.datasets.*.load_data() (datasets/)
    "XDG_CACHE_HOME": "xdg",  # pip, matplotlib, many others: ~/.cache
    "HF_HOME": "huggingface",  # huggingface_hub, datasets, transformers
    "TORCH_HOME": "torch",  # torch.hub, torchvision weights
    "TFDS_DATA_DIR": "tensorflow_datasets",  # tensorflow_datasets
    "SCIKIT_LEARN_DATA": "scikit_learn_data",  # sklearn.datasets.fetch_*
}
#: What libraries write into those folders that is no download: settings and caches every run rebuilds
#: (Keras's keras.json, matplotlib's font list, fontconfig). Never recorded nor saved, so a script that
#: downloads nothing leaves the cache as it was.
NOT_DATA = ("keras/keras.json", "xdg/matplotlib/*", "xdg/fontconfig/*", "xdg/pip/*")
CACHE_DIR_ENV = kt_env.CACHE_DIR  # the data folder itself, for a script's own downloads
LOCAL_FOLDER = "data-cache"  # under the state folder
RUNNER_FOLDER = "keeptraining-data"  # under the runner's tool cache
MANIFEST, DATA, IN_USE = "manifest.json", "data", ".in-use"
KEY_PREFIX = "keeptraining-data-v1-"
STALE_AFTER_S = 7 * 24 * 3600  # another chain's folder unused this long goes (as GitHub evicts caches)
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MIN_SECRET_LENGTH = 8  # shorter values would match by chance in binary data
SECRET_VARS = (
    "KT_GITHUB_TOKEN",
    "GITHUB_TOKEN",
    "INPUT_GITHUB_TOKEN",
    "KT_SMTP_PASSWORD",
    "INPUT_SMTP_PASSWORD",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "KT_REGISTRY_PASSWORD",
)
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # a full commit id (restore.FULL_SHA)
_CHUNK = 1024 * 1024


# --- where ---------------------------------------------------------------------------------


def chain_commit(env: Mapping[str, str]) -> str:
    """The chain's commit on GitHub (the ``commit`` input, else the run's): a full id, or ''."""
    commit = (env.get("KT_INPUT_COMMIT") or env.get("GITHUB_SHA") or "").strip()
    return commit if _COMMIT.fullmatch(commit) else ""


def folder(config: Config, state_dir: Path, env: Mapping[str, str] = os.environ) -> Path | None:
    """Where this chain's data cache is on this machine; None with ``cache: false`` (or, on GitHub,
    without a runner folder, a repository or a commit to name it by)."""
    if not config.cache:
        return None
    if not gha.in_actions(env):
        return state_dir / LOCAL_FOLDER
    root = env.get("RUNNER_TOOL_CACHE") or env.get("RUNNER_TEMP") or ""
    repository, commit = env.get("GITHUB_REPOSITORY", ""), chain_commit(env)
    if not (root and commit and _REPOSITORY.fullmatch(repository)) or ".." in repository.split("/"):
        return None
    return Path(root) / RUNNER_FOLDER / repository / commit[:12]


def plan(config: Config, state_dir: Path, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What the action's actions/cache steps need: ``path`` (the manifest first, so that an archive
    cut short leaves a manifest that tells), ``key`` (unique to this run attempt: entries are
    immutable) and ``restore-keys`` (this chain's newest entry, else any chain's). Empty values:
    no cache."""
    where = folder(config, state_dir, env)
    if where is None:
        return {"path": "", "key": "", "restore-keys": ""}
    _remove_stale_siblings(where)
    chain = f"{KEY_PREFIX}{chain_commit(env)}-"
    run = f"{env.get('GITHUB_RUN_ID', '0')}-{env.get('GITHUB_RUN_ATTEMPT', '1')}"
    return {
        "path": f"{where / MANIFEST}\n{where / DATA}",
        "key": chain + run,
        "restore-keys": f"{chain}\n{KEY_PREFIX}",
    }


def _remove_stale_siblings(where: Path) -> None:
    """Other chains' folders on a runner that keeps its tool cache (self-hosted), unused for a week."""
    parent = where.parent
    if not parent.is_dir() or parent.is_symlink():
        return
    for sibling in parent.iterdir():
        try:
            info = os.lstat(sibling)
            if (
                sibling != where
                and sibling.is_dir()
                and not sibling.is_symlink()
                and time.time() - info.st_mtime > STALE_AFTER_S
            ):
                shutil.rmtree(sibling)
        except OSError:
            continue


def library_env(base: str, already_set: Callable[[str], bool]) -> dict[str, str]:
    """The variables that point libraries' download folders into the data folder ``base`` (as the
    training process sees it), leaving alone those the image or the environment already sets."""
    env = {name: f"{base}/{sub}" for name, sub in LIBRARY_DIRS.items() if not already_set(name)}
    return {**env, CACHE_DIR_ENV: base}


# --- what is in it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    size: int = 0
    sha256: str = ""
    link: str | None = None  # a symbolic link: its target, as written
    mtime_ns: int = 0  # not recorded: only to skip hashing a file again that did not change

    def recorded(self) -> tuple[int, str, str | None]:
        return self.size, self.sha256, self.link


class _Damaged(Exception):
    """The cache does not match its manifest: it is discarded."""


def _secrets(env: Mapping[str, str]) -> list[bytes]:
    values = {env.get(name, "") for name in SECRET_VARS}
    return [v.encode() for v in values if len(v) >= MIN_SECRET_LENGTH]


def _digest(path: Path, secrets: list[bytes]) -> tuple[int, str, bool]:
    """(size, sha256, whether a secret is in it) of a regular file, never read through a link."""
    digest, size, tail, found = hashlib.sha256(), 0, b"", False
    keep = max((len(s) for s in secrets), default=1) - 1
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if secrets and not found:
                window = tail + chunk
                found = any(secret in window for secret in secrets)
                tail = window[-keep:] if keep else b""
    return size, digest.hexdigest(), found


def _walk(data: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry under ``data`` but folders, as (relative path, entry); links are not followed."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(data / rel_dir) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(rel)
                else:
                    yield rel, entry


def _link_inside(rel: str, target: str) -> bool:
    """A relative link whose text stays inside the data folder (Hugging Face's cache is made of them).

    Only the first test: links read one by one by their text can still leave together
    (``b -> .``, ``l1 -> b/..``): ``_resolves_inside`` judges where the link really leads."""
    if not target or os.path.isabs(target):
        return False
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    return resolved != ".." and not resolved.startswith("../")


def _resolves_inside(path: Path, data: Path) -> bool:
    """Whether the link ``path``, followed on this machine through every link on the way, ends inside
    ``data`` (the data folder, itself a plain folder); a loop or an error is outside."""
    try:
        real = os.path.realpath(path, strict=False)
        base = os.path.realpath(data, strict=True)
    except (OSError, RuntimeError, ValueError):
        return False
    return real == base or real.startswith(base + os.sep)


def _secret_in(text: str, secrets: list[bytes]) -> bool:
    raw = os.fsencode(text)
    return any(secret in raw for secret in secrets)


def _read_manifest(path: Path) -> dict[str, _Entry] | None:
    """The recorded entries; None when there is no manifest; _Damaged when it cannot be believed."""
    try:
        raw = safe_paths.read_bytes(
            path.parent, path.name, "The data cache's manifest", max_bytes=MAX_MANIFEST_BYTES
        )
    except FileNotFoundError:
        return None
    except PathRefused as exc:  # a link, a FIFO, a device or too large: never read through
        raise _Damaged(f"its manifest cannot be read: {str(exc)[:200]}") from None
    except OSError as exc:
        raise _Damaged(f"its manifest cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw) if len(raw) <= MAX_MANIFEST_BYTES else None
        if not isinstance(data, dict) or data.get("format") != 1:
            raise ValueError("not a format-1 manifest")
        files, links = data.get("files"), data.get("links")
        if not isinstance(files, dict) or not isinstance(links, dict):
            raise ValueError("files and links must be mappings")
        entries: dict[str, _Entry] = {}
        for rel, item in files.items():
            size, sha = (item.get("size"), item.get("sha256")) if isinstance(item, dict) else (None, None)
            if type(size) is not int or size < 0 or not isinstance(sha, str) or not _SHA256.fullmatch(sha):
                raise ValueError(f"the entry of {_shown(rel)} is not a size and a sha256")
            entries[rel] = _Entry(size, sha)
        for rel, target in links.items():
            if not isinstance(target, str):
                raise ValueError(f"the link {_shown(rel)} has no target")
            entries[rel] = _Entry(link=target)
        for rel in entries:
            safe_paths.check_relative(rel, "a path in the data cache's manifest")
    except (ValueError, PathRefused) as exc:
        raise _Damaged(f"its manifest is not valid: {str(exc)[:200]}") from None
    return entries


def recorded_files(where: Path) -> list[dict[str, Any]]:
    """The files the cache's manifest records, as ``{path, sha256, bytes}`` sorted by path ([] when it
    has none, or a manifest that cannot be believed): what a model card lists as its data."""
    try:
        entries = _read_manifest(where / MANIFEST) or {}
    except _Damaged:
        return []
    return [
        {"path": rel, "sha256": e.sha256, "bytes": e.size}
        for rel, e in sorted(entries.items())
        if e.link is None
    ]


def _shown(rel: str, limit: int = 100) -> str:
    """A path of the cache in a message: its end, at most ``limit`` characters (names are untrusted)."""
    return rel if len(rel) <= limit else "..." + rel[-(limit - 3) :]


def _manifest_bytes(entries: Mapping[str, _Entry]) -> bytes:
    files = {
        rel: {"size": e.size, "sha256": e.sha256} for rel, e in sorted(entries.items()) if e.link is None
    }
    links = {rel: e.link for rel, e in sorted(entries.items()) if e.link is not None}
    return json.dumps({"format": 1, "files": files, "links": links}, indent=1).encode()


def _size_text(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    scaled = float(size)
    for unit in ("KB", "MB", "GB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GB":
            break
    return f"{scaled:.1f} {unit}"


# --- one attempt's use of it -------------------------------------------------------------------


@dataclass
class Session:
    """The data cache as one attempt uses it: opened (checked) before training, closed (recorded)
    after."""

    root: Path
    secrets: list[bytes]
    say: Callable[[str], None]
    before: dict[str, _Entry] = field(default_factory=dict)  # what the attempt starts with
    recorded: dict[str, _Entry] = field(default_factory=dict)  # what the manifest says of it
    notes: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / DATA

    def summary(self, entries: Mapping[str, _Entry]) -> str:
        files = [e for e in entries.values() if e.link is None]
        return f"{len(files)} file{'s' if len(files) != 1 else ''}, {_size_text(sum(e.size for e in files))}"

    def _entries(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """The data folder's entries but what is no data (NOT_DATA), which is removed here: the
        library rebuilds it next time, so it is neither data nor worth a save."""
        for rel, entry in _walk(self.data_dir):
            if any(fnmatch.fnmatchcase(rel, pattern) for pattern in NOT_DATA):
                Path(entry.path).unlink()
                continue
            yield rel, entry

    def _scan(
        self,
        recorded: Mapping[str, _Entry],
        *,
        keep_unrecorded: bool,
        known: Mapping[str, _Entry] | None = None,
    ) -> dict[str, _Entry]:
        """What is in ``data/`` now. Recorded entries must match (_Damaged otherwise); an unrecorded
        file is hashed and kept, or removed when not ``keep_unrecorded``. A file whose size and
        modification time match ``known`` is not hashed again."""
        found: dict[str, _Entry] = {}
        removed: set[str] = set()
        dropped = 0
        for rel, entry in self._entries():
            path = Path(entry.path)
            if _secret_in(rel, self.secrets):  # never named in the warning: the name is the leak
                self._remove(path, "a path that holds one of keeptraining's secrets")
                removed.add(rel)
                continue
            if entry.is_symlink():
                link = self._link(rel, path)
                if link is None:
                    removed.add(rel)
                    continue
                found[rel] = link
            elif entry.is_file(follow_symlinks=False):
                info = self._without_setid(rel, path, entry.stat(follow_symlinks=False))
                same = (known or {}).get(rel)
                if same is not None and (same.size, same.mtime_ns) == (info.st_size, info.st_mtime_ns):
                    found[rel] = same
                    continue
                if rel not in recorded and not keep_unrecorded:
                    path.unlink()
                    dropped += 1
                    continue
                size, sha, secret = _digest(path, self.secrets)
                if secret:
                    self._remove(
                        path,
                        f"{_shown(rel)} holds one of keeptraining's secrets (the token or the SMTP password)",
                    )
                    removed.add(rel)
                    continue
                found[rel] = _Entry(size, sha, mtime_ns=info.st_mtime_ns)
            else:
                self._remove(path, f"{_shown(rel)} is not a regular file")
                removed.add(rel)
                continue
            if rel in recorded and found[rel].recorded() != recorded[rel].recorded():
                raise _Damaged(f"{_shown(rel)} is not what was recorded")
        removed |= self._drop_links_out(found)
        self._drop_secret_folders()
        missing = sorted(set(recorded) - set(found) - removed)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise _Damaged(f"{_shown(missing[0])} is missing{more}")
        if dropped:
            self.notes.append(f"{dropped} file(s) that a training cut short left were removed")
        return found

    def _link(self, rel: str, path: Path) -> _Entry | None:
        """The entry of a link whose text stays inside; None when it was removed."""
        target = os.readlink(path)
        if _secret_in(target, self.secrets):
            self._remove(path, f"{_shown(rel)} is a link whose target holds one of keeptraining's secrets")
            return None
        if not _link_inside(rel, target):
            self._remove(path, f"{_shown(rel)} is a link out of the cache")
            return None
        return _Entry(link=target)

    def _without_setid(self, rel: str, path: Path, info: os.stat_result) -> os.stat_result:
        """A file's setuid/setgid bits are dropped: a cache holds data, never a privilege."""
        if not info.st_mode & (stat.S_ISUID | stat.S_ISGID):
            return info
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
        self.notes.append(f"the setuid/setgid bit of {_shown(rel)} was dropped")
        return os.lstat(path)

    def _drop_secret_folders(self) -> None:
        """Remove the folders whose name holds a secret (what is in them went already)."""
        if not self.secrets:
            return
        for top, dirs, _ in os.walk(self.data_dir):
            for name in list(dirs):
                if _secret_in(name, self.secrets):
                    where = os.path.join(top, name)
                    os.unlink(where) if os.path.islink(where) else shutil.rmtree(where)
                    dirs.remove(name)
                    gha.warn(
                        f"The data cache at {self.root}: a folder whose name holds one of "
                        "keeptraining's secrets: removed, never saved.",
                        title="Data cache",
                    )

    def _drop_links_out(self, found: dict[str, _Entry]) -> set[str]:
        """Remove the links that, followed through the others, lead out of the data folder (judged
        where they resolve on this machine, not by their text); again until none is left, since
        removing one changes where the others lead."""
        removed: set[str] = set()
        while True:
            out = [
                rel
                for rel, e in found.items()
                if e.link is not None and not _resolves_inside(self.data_dir / rel, self.data_dir)
            ]
            if not out:
                return removed
            for rel in out:
                self._remove(self.data_dir / rel, f"{_shown(rel)} is a link that leads out of the cache")
                del found[rel]
                removed.add(rel)

    def _remove(self, path: Path, why: str) -> None:
        path.unlink()
        gha.warn(f"The data cache at {self.root}: {why}: removed, never saved.", title="Data cache")

    def open(self) -> Session:
        """Check the cache against its manifest (discard it when it does not match); mark it in use."""
        safe_paths.plain_dir(self.root, "The data cache folder")
        safe_paths.plain_dir(self.data_dir, "The data cache's data folder")
        cut_off = os.path.lexists(self.root / IN_USE)
        _unlink_if_special(self.root / IN_USE)  # only keeptraining writes it: anything but a file goes
        try:
            self.recorded = _read_manifest(self.root / MANIFEST) or {}
            self.before = self._scan(self.recorded, keep_unrecorded=not cut_off)
            unrecorded = len(set(self.before) - set(self.recorded))
            if unrecorded:
                self.notes.append(f"{unrecorded} file(s) it had not recorded were kept (pre-seeded)")
        except _Damaged as exc:
            gha.warn(
                f"The data cache at {self.root} is damaged ({exc}): discarded, not trusted; the script "
                "downloads its data again.",
                title="Data cache discarded",
            )
            shutil.rmtree(self.data_dir)
            (self.root / MANIFEST).unlink(missing_ok=True)
            safe_paths.plain_dir(self.data_dir, "The data cache's data folder")
            self.before, self.recorded = {}, {}
        _write_new(self.root / IN_USE, b"an attempt is using this data cache\n")
        extra = f"; {'; '.join(self.notes)}" if self.notes else ""
        self.say(f"Data cache: {self.summary(self.before)} checked{extra} ({self.root}).")
        return self

    def close(self, *, complete: bool) -> bool:
        """Record what the attempt left (``complete``: the training ended on its own; otherwise what it
        created or changed is removed); returns whether the record changed (what the action saves).
        Never raises: a problem is a warning and the cache is then not saved."""
        self.notes = []
        try:
            after = self._scan({}, keep_unrecorded=complete, known=self.before)
            changed = {k: e.recorded() for k, e in after.items()} != {
                k: e.recorded() for k, e in self.recorded.items()
            }
            manifest = _manifest_bytes(after)
            if len(manifest) > MAX_MANIFEST_BYTES:
                raise OSError(f"more files than a manifest of {MAX_MANIFEST_BYTES // 2**20} MB can record")
            if changed or not os.path.lexists(self.root / MANIFEST):
                safe_paths.atomic_write(self.root / MANIFEST, manifest)
            (self.root / IN_USE).unlink(missing_ok=True)
        except (OSError, PathRefused) as exc:
            gha.warn(
                f"The data cache at {self.root} could not be recorded ({exc}): it is not saved.",
                title="Data cache not saved",
            )
            gha.set_outputs({"data-cache": "unchanged"})
            return False
        gha.set_outputs({"data-cache": "changed" if changed else "unchanged"})
        extra = f"; {'; '.join(self.notes)}" if self.notes else ""
        self.say(f"Data cache: {self.summary(after)}{' (changed)' if changed else ''}{extra}.")
        return changed


def _unlink_if_special(path: Path) -> None:
    """Remove ``path`` when it is anything but a regular file (a link, a FIFO, a folder's stand-in):
    the cache root's own files are never read or written through one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        gha.warn(
            f"The data cache at {path.parent}: {path.name} is not a regular file: removed.",
            title="Data cache",
        )
        if stat.S_ISDIR(mode):
            shutil.rmtree(path)
        else:
            path.unlink()


def _write_new(path: Path, data: bytes) -> None:
    """Write ``path`` afresh, never through a link or into a FIFO left in its place."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def open_session(
    config: Config, state_dir: Path, env: Mapping[str, str] = os.environ, say: Callable[[str], None] = print
) -> Session | None:
    """The data cache, checked and ready for one attempt; None when it is off or cannot be used."""
    where = folder(config, state_dir, env)
    if where is None:
        if config.cache and gha.in_actions(env):
            gha.warn(
                "No folder for the data cache (RUNNER_TOOL_CACHE, GITHUB_REPOSITORY or the chain's "
                "commit is missing): this attempt trains without it.",
                title="Data cache not used",
            )
        return None
    try:
        return Session(where, _secrets(env), say).open()
    except (OSError, PathRefused) as exc:
        gha.warn(
            f"The data cache at {where} cannot be used ({exc}): this attempt trains without it.",
            title="Data cache not used",
        )
        return None


def describe(config: Config, state_dir: Path, env: Mapping[str, str] = os.environ) -> list[str]:
    """``keeptraining data-cache`` on a machine: where the cache is and where each library's files go."""
    where = folder(config, state_dir, env)
    if where is None:
        return ["The data cache is off (`cache: false`)."]
    try:
        recorded = _read_manifest(where / MANIFEST) or {}
        state = f"{len([e for e in recorded.values() if e.link is None])} recorded files"
    except _Damaged as exc:
        state = f"damaged: {exc}; the next attempt discards it"
    lines = [
        f"Data cache: {where / DATA} ({state}).",
        "To pre-seed it, put the files where the library looks for them:",
    ]
    lines += [f"  {name}={where / DATA / sub}" for name, sub in LIBRARY_DIRS.items()]
    lines.append(f"  {CACHE_DIR_ENV}={where / DATA} (for the script's own downloads)")
    return lines


def step_outputs(config: Config, state_dir: Path, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The action's data-cache step: its outputs, never an error (the attempt step reports those)."""
    try:
        return plan(config, state_dir, env)
    except OSError as exc:
        gha.warn(f"The data cache is not restored: {exc}", title="Data cache not restored")
        return {"path": "", "key": "", "restore-keys": ""}
