"""The peer of ``mlkube train`` in ``run.py``: what a data scientist's script would do.

Reads the CSV with pandas, optionally holds out the same 20 % ``mlkube train`` does
(``--split``, so both fit on the same 80k rows), fits the estimator and saves it with
joblib. Nothing else: no quality gate, no metrics, no profile, no safe format.

    python bare_sklearn.py DATA.csv OUT.joblib CLASS_PATH PARAMS_JSON [--split]
"""

from __future__ import annotations

import importlib
import json
import sys

import joblib
import pandas as pd
from sklearn.model_selection import train_test_split


def main(argv: list[str]) -> None:
    data, out, class_path, params = argv[:4]
    frame = pd.read_csv(data)
    y = frame.pop("label").to_numpy()
    if "--split" in argv:
        frame, _, y, _ = train_test_split(frame, y, test_size=0.2, random_state=0, stratify=y)
    module, _, name = class_path.rpartition(".")
    estimator = getattr(importlib.import_module(module), name)(**json.loads(params))
    estimator.fit(frame, y)
    joblib.dump(estimator, out)


if __name__ == "__main__":
    main(sys.argv[1:])
