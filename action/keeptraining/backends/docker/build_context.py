"""What the training image is built from: the base images the Dockerfile starts from and the
files it copies, read from the Dockerfile itself.

The content hash (``docker_image.image_tag``) and the build context the engine receives are
the same list of files, so that the tag describes exactly what was built:

* never ``.git/``, the chain's state folder (``.keeptraining/``) or the code folder, whatever
  the repository's ``.dockerignore`` says: the state changes at every attempt, and the code
  is mounted at run time, not copied in (a file of the code folder that a ``COPY`` names
  explicitly, e.g. ``COPY ml_code/requirements.txt``, is kept);
* then ``.dockerignore``, read as docker-py reads it;
* then only the files a ``COPY`` or ``ADD`` of the build context names (a folder: its files;
  wildcards as Docker matches them). When an instruction cannot be read with certainty (a
  variable in a source, a heredoc, an unknown flag, another escape character), every file
  that is left is used: a larger context, never a wrong tag.

The classic builder, which docker-py drives, reads nothing else from the context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from docker.utils.build import exclude_paths

ALWAYS_EXCLUDED = (".git", ".keeptraining")
_CONTINUATION = re.compile(r"\\[ \t]*\r?\n")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::?[-+][^}]*)?\}|(\w+))")
_IGNORED_FLAGS = ("--chown=", "--chmod=", "--link")  # change owner/mode, not which files


def instructions(text: str) -> list[tuple[str, str]] | None:
    """(INSTRUCTION, arguments) in order, continuation lines joined; None when the Dockerfile
    uses a parser directive (``# escape=``) or a heredoc, which this reader does not follow."""
    if re.search(r"^\s*#\s*escape\s*=", text, re.MULTILINE | re.IGNORECASE) or "<<" in text:
        return None
    result = []
    for line in _CONTINUATION.sub(" ", text).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def base_images(text: str, build_args: Mapping[str, str]) -> list[str]:
    """The images the Dockerfile's stages start ``FROM`` (build arguments and ``ARG`` defaults
    before the first ``FROM`` substituted; ``scratch`` and earlier stages left out)."""
    parsed = instructions(text) or []
    defaults: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for word, rest in parsed:
        if word == "ARG" and not images and not stages:
            name, _, default = rest.partition("=")
            defaults[name.strip()] = default.strip().strip("\"'")
        elif word == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            if not parts:
                continue
            image = _substituted(parts[0], {**defaults, **build_args})
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages.add(parts[2].lower())
            if image and image.lower() != "scratch" and image.lower() not in stages and image not in images:
                images.append(image)
    return images


def _substituted(text: str, values: Mapping[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), ""), text)


def copy_sources(text: str) -> list[str] | None:
    """The build-context paths (patterns) that ``COPY``/``ADD`` name, normalised; None when
    one cannot be read with certainty (then the whole context counts)."""
    parsed = instructions(text)
    if parsed is None:
        return None
    sources: list[str] = []
    for word, rest in parsed:
        if word not in ("COPY", "ADD"):
            continue
        args = _arguments(rest)
        if args is None:
            return None
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue  # from another stage or image, not from the context
        if any(not f.startswith(_IGNORED_FLAGS) for f in flags):
            return None
        paths = [a for a in args if not a.startswith("--")][:-1]
        for source in paths:
            if "$" in source:
                return None
            if word == "ADD" and ("://" in source or source.startswith("git@")):
                continue  # a download: not a context file
            sources.append(_normalised(source))
    return sources


def _arguments(rest: str) -> list[str] | None:
    flags = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.strip()
    if rest.startswith("["):
        try:
            listed = json.loads(rest)
        except ValueError:
            return None
        if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            return None
        return [*flags, *listed]
    words = rest.split()
    if any(q in rest for q in "\"'"):
        return None
    return [*flags, *words]


def _normalised(source: str) -> str:
    path = str(PurePosixPath("/" + source))  # collapses ./ and //; .. cannot leave the context
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/".join(parts)


def copied(path: str, pattern: str) -> bool:
    """Whether ``COPY <pattern>`` copies the context file ``path`` (a folder copies its files)."""
    if not pattern:
        return True
    want = pattern.split("/")
    have = path.split("/")
    return len(have) >= len(want) and all(fnmatchcase(h, w) for h, w in zip(have, want, strict=False))


def dockerignore_patterns(root: Path) -> list[str]:
    """``.dockerignore`` read exactly as docker-py reads it when it builds the context."""
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text(encoding="utf-8", errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def files(
    root: Path, dockerfile_rel: str, dockerfile_text: str, excluded: Sequence[str] = (), code_folder: str = ""
) -> list[str]:
    """The files of the build context, relative to ``root`` and sorted: what is hashed and sent.

    ``excluded``: folders (relative) that never enter, besides ``.git`` and ``.keeptraining``;
    ``code_folder``: the mounted code, which enters only where a ``COPY`` names it explicitly.
    """
    sources = copy_sources(dockerfile_text)
    never = [f.strip("/") for f in (*ALWAYS_EXCLUDED, *excluded) if f.strip("/") not in ("", ".")]
    code = code_folder.strip("/")
    named_in_code = [
        s
        for s in (sources or [])
        if code and code != "." and _inside(s, code) and not any(c in s for c in "*?[")
    ]
    patterns = [*dockerignore_patterns(root), *never]
    if code and code != ".":
        patterns += [code, *(f"!{s}" for s in named_in_code)]
    listed = exclude_paths(str(root), patterns, dockerfile=dockerfile_rel)
    kept = []
    for rel in listed:
        path = root / rel
        if rel == dockerfile_rel or (path.is_dir() and not path.is_symlink()):
            continue  # the Dockerfile is hashed and sent on its own; folders are their files
        if any(_inside(rel, folder) for folder in never):
            continue  # an exception in .dockerignore does not bring these back
        if sources is not None and not any(copied(rel, s) for s in sources):
            continue
        kept.append(rel)
    return sorted(kept)
