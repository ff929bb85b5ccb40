"""The zoo's data: scikit-learn's bundled digits (offline), read the way ml_code/nn.py reads them.

Straight from the CSV that scikit-learn ships, without importing scikit-learn (about 1 s):
(x_train, y_train, x_test, y_test), 8x8 images flattened to 64 values in [0, 1].
"""

import gzip
import importlib.util
from pathlib import Path

import numpy as np


def digits(test_fraction=0.25, seed=0):
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the zoo's scripts need scikit-learn installed (it bundles the digits)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = np.loadtxt(fh, delimiter=",")
    x = (data[:, :-1] / 16.0).astype("float32")
    y = data[:, -1].astype("int64")
    order = np.random.RandomState(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]
