"""Training failures keeptraining recognises in the log, each with what to change.

A script that exits non-zero is reported as "exited with code N" plus the end of its log; for the
failures a new user meets on day one (a read-only file system, a package the image lacks, Keras 2
code under Keras 3) that is not enough: ``explain`` names the cause and the fix. The log is the
training's output, untrusted: only a bounded tail is searched, and what is quoted from it is cut
short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEARCHED_CHARS = 64 * 1024  # the end of the log: where a traceback's last line is
QUOTED_CHARS = 120
# Import names whose package has another name on the package index (as the generated Dockerfile knows them).
PACKAGE_NAMES = {
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "yaml": "PyYAML",
    "skimage": "scikit-image",
    "cv2": "opencv-python-headless",
    "bs4": "beautifulsoup4",
    "tensorflow": "tensorflow-cpu",
}

_READ_ONLY = re.compile(r"\[Errno 30\] Read-only file system: '(?P<path>[^'\n]{0,300})'")
_NO_MODULE = re.compile(r"^ModuleNotFoundError: No module named '(?P<module>[\w.]{1,200})'", re.MULTILINE)
_KERAS2 = (
    (
        re.compile(r"(?:has no attribute|cannot import name) '(?:ImageDataGenerator|img_to_array|load_img)'"),
        "`keras.preprocessing.image.ImageDataGenerator` is Keras 2",
        "load images with `keras.utils.image_dataset_from_directory` and augment with preprocessing layers "
        "(`keras.layers.RandomFlip`, ...)",
    ),
    (
        re.compile(r"has no attribute '(fit_generator|evaluate_generator|predict_generator)'"),
        "`fit_generator` (and `evaluate_generator`, `predict_generator`) are Keras 2",
        "call `fit` (`evaluate`, `predict`) with the generator",
    ),
    (
        re.compile(
            r"must end in `\.keras`|must end in `\.weights\.h5`|Invalid filepath extension for saving"
        ),
        "Keras 3 saves models as `.keras` and weights as `.weights.h5`, not `.hdf5`",
        "rename the file (`ModelCheckpoint('best.keras')`, or `'best.weights.h5'` with "
        "`save_weights_only=True`)",
    ),
    (
        re.compile(r"unexpected keyword argument 'lr'|Argument\(s\) not recognized: \{'lr'"),
        "optimizers take `learning_rate=`, not `lr=`",
        "write `learning_rate=`",
    ),
)
KERAS2_PIN = (
    "or run it as written with Keras 2: add `tf-keras` (the same version as tensorflow) to "
    "requirements.txt and set `TF_USE_LEGACY_KERAS=1` in the image (Dockerfile `ENV`); "
    "keeptraining's adapter then steps aside"
)


@dataclass(frozen=True)
class Explanation:
    message: str  # appended to "The training command exited with code N."
    hint: str


def explain(output: str, errors: str = "", *, container: bool = False) -> Explanation | None:
    """The cause and fix of a failed training, when its log shows one keeptraining knows."""
    text = f"{output[-SEARCHED_CHARS:]}\n{errors[-SEARCHED_CHARS:]}"
    found = _READ_ONLY.search(text)
    if found:
        where = (
            "the script's own folder (a writable copy in the container; what is written there is "
            "kept with the attempt in its workdir/ folder)"
            if container
            else "the script's own folder"
        )
        return Explanation(
            f" It tried to write {_quote(found['path'])}, which is on a read-only file system.",
            f"Write files to {where}, to $KT_OUTPUT_DIR (kept with the attempt; a checkpoint there is what "
            "the next attempt resumes from), or to /tmp or $HOME for scratch files.",
        )
    missing = _NO_MODULE.findall(text)
    if missing:
        module = missing[-1]
        top = module.split(".")[0]
        if top in ("keras", "tensorflow") and "." in module:
            return _keras2(text) or Explanation(
                f" The training imports {_quote(module)}, which this Keras/TensorFlow does not have.",
                f"Update the import for the installed version, {KERAS2_PIN}.",
            )
        package = PACKAGE_NAMES.get(top, top)
        return Explanation(
            f" The training imports {_quote(top)}, which is not installed where it runs.",
            f"Add `{package}` (pinned, e.g. `{package}==<version>`) to requirements.txt: the code folder's "
            "or the repository's, which the generated training image installs; with your own Dockerfile, "
            "install it there; with `backend: local`, in the environment keeptraining runs in.",
        )
    return _keras2(text)


def _keras2(text: str) -> Explanation | None:
    for pattern, what, change in _KERAS2:
        if pattern.search(text):
            return Explanation(
                f" The script uses Keras 2's API under Keras 3: {what}.",
                f"Change it: {change}; {KERAS2_PIN}.",
            )
    return None


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 3] + "...")
