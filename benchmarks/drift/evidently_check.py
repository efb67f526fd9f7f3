"""Evidently's DataDriftPreset on two Parquet files; runs in Evidently's own venv.

Usage: python evidently_check.py REFERENCE.parquet LIVE.parquet SPEC.json OUT.json
SPEC.json: {"numeric": [...], "categorical": [...]}. Writes the flagged columns, each
column's method, score and threshold, and the dataset verdict.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    reference_path, live_path, spec_path, out_path = sys.argv[1:5]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    reference = pd.read_parquet(reference_path)
    live = pd.read_parquet(live_path)
    definition = DataDefinition(
        numerical_columns=spec["numeric"], categorical_columns=spec["categorical"]
    )
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(live, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    features = {}
    share = None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
        elif config["type"].endswith("ValueDrift"):
            method = config["method"]
            value = float(metric["value"])
            threshold = float(config["threshold"])
            drifted = value < threshold if "p_value" in method else value >= threshold
            features[config["column"]] = {
                "method": method,
                "score": value,
                "threshold": threshold,
                "drifted": drifted,
            }
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "driftShare": share,
                "datasetDrift": share is not None and share >= 0.5,
                "features": features,
            },
            handle,
        )


if __name__ == "__main__":
    main()
