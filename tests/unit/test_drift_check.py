"""End-to-end drift checks in process on seeded synthetic data: 60 features with known
shifts are flagged exactly at default settings, a no-drift sample flags nothing, small
references switch to KS/chi², overrides from a Monitor manifest apply, chunking does
not change the result, and the accumulator's memory does not grow with the rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from drift_data import SHIFTED, schema_of, store_version, synthetic_frame
from mlkube.runtime.drift import window as window_module
from mlkube.runtime.drift.accumulate import Block, LiveSummary
from mlkube.runtime.drift.check import run_check
from mlkube.runtime.drift.spec import DriftSettings, SpecError, settings_from_monitor
from mlkube.runtime.profile import build_reference_profile, read_reference_profile

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    return store_version(store, synthetic_frame(20_000, seed=1, drifted=False))


def _flagged(report: dict[str, object]) -> set[str]:
    features = report["features"]
    assert isinstance(features, dict)
    return {name for name, entry in features.items() if entry["drifted"]}


@pytest.mark.parametrize("drifted", [True, False])
def test_flagged_set_equals_shifted_set_at_defaults(
    version: Path, tmp_path: Path, drifted: bool
) -> None:
    live = tmp_path / "live.parquet"
    synthetic_frame(20_000, seed=2, drifted=drifted).to_parquet(live)
    result = run_check(version, live, DriftSettings(), NOW, report_path=tmp_path / "r.json")
    assert _flagged(result.report) == (SHIFTED if drifted else set())
    methods = {e["method"] for e in result.report["features"].values()}
    assert methods == {"wasserstein", "jensenshannon"}
    assert result.report["verdict"] == "no-drift"  # 14 of 60 < datasetDriftShare 0.5
    assert result.report["driftShare"] == pytest.approx(len(SHIFTED) / 60 if drifted else 0.0)
    assert json.loads((tmp_path / "r.json").read_text()) == result.report
    if drifted:
        assert result.plot_path is not None and result.plot_path.read_bytes()[:4] == b"\x89PNG"
    else:
        assert result.plot_path is None and not (tmp_path / "r.png").exists()


def test_dataset_drift_follows_the_share_and_csv_reads_like_parquet(
    version: Path, tmp_path: Path
) -> None:
    live = tmp_path / "live.csv"
    synthetic_frame(5_000, seed=3, drifted=True).to_csv(live, index=False)
    settings = DriftSettings(dataset_drift_share=0.2)
    result = run_check(version, live, settings, NOW, report_path=tmp_path / "r.json", plot=False)
    assert result.report["verdict"] == "drift" and result.report["datasetDrift"] is True
    assert _flagged(result.report) == SHIFTED
    assert result.report["samples"]["live"] == 5_000


def test_below_min_samples_is_insufficient_data_never_drift(version: Path, tmp_path: Path) -> None:
    live = tmp_path / "live.parquet"
    synthetic_frame(300, seed=4, drifted=True).to_parquet(live)
    settings = DriftSettings(dataset_drift_share=0.1)
    result = run_check(version, live, settings, NOW, report_path=tmp_path / "r.json", plot=False)
    assert result.report["verdict"] == "insufficient-data"
    assert result.report["datasetDrift"] is False and _flagged(result.report) == set()


def test_small_reference_uses_ks_and_chi2_p_values(tmp_path: Path) -> None:
    reference = synthetic_frame(800, seed=5, drifted=False)[["n0", "n1", "n2", "c0", "c1"]]
    version = store_version(tmp_path / "store", reference)
    live_frame = synthetic_frame(2_000, seed=6, drifted=True)[["n0", "n1", "n2", "c0", "c1"]]
    live = tmp_path / "live.parquet"
    live_frame.to_parquet(live)
    result = run_check(version, live, DriftSettings(), NOW, report_path=tmp_path / "r.json")
    features = result.report["features"]
    assert {features[n]["method"] for n in ("n0", "n1", "n2")} == {"ks"}
    assert {features[n]["method"] for n in ("c0", "c1")} == {"chi2"}
    # the profile holds every reference value, so the KS test is exactly scipy's
    expected = scipy_stats.ks_2samp(reference["n1"].to_numpy(), live_frame["n1"].to_numpy())
    assert features["n1"]["pValue"] == pytest.approx(expected.pvalue, abs=1e-9)
    assert features["n1"]["drifted"] and features["c0"]["drifted"]
    assert features["n1"]["threshold"] == 0.05


def test_monitor_overrides_choose_methods_and_thresholds(version: Path, tmp_path: Path) -> None:
    settings = settings_from_monitor(
        {
            "kind": "Monitor",
            "spec": {
                "modelRef": {"name": "churn"},
                "window": {"duration": "2h", "minSamples": 10},
                "drift": {
                    "numeric": "psi",
                    "categorical": "chi2",
                    "datasetDriftShare": 0.3,
                    "features": {"n0": {"method": "ks", "threshold": 0.01}},
                },
            },
        }
    )
    assert settings.min_samples == 10 and settings.window.total_seconds() == 7200
    live = tmp_path / "live.parquet"
    synthetic_frame(3_000, seed=7, drifted=False).to_parquet(live)
    result = run_check(version, live, settings, NOW, report_path=tmp_path / "r.json", plot=False)
    features = result.report["features"]
    assert features["n0"]["method"] == "ks" and features["n0"]["threshold"] == 0.01
    assert features["n5"]["method"] == "psi" and features["n5"]["threshold"] == 0.2
    assert features["c3"]["method"] == "chi2" and "pValue" in features["c3"]
    with pytest.raises(SpecError, match="wasserstein"):
        settings_from_monitor(
            {
                "kind": "Monitor",
                "spec": {"modelRef": {"name": "x"}, "drift": {"categorical": "wasserstein"}},
            }
        ).method_for("c0", "categorical", 10_000, None)
    with pytest.raises(SpecError, match="datasetDriftShare"):
        settings_from_monitor({"kind": "Monitor", "spec": {"drift": {"datasetDriftShare": 2}}})


def test_chunk_size_does_not_change_the_result(
    version: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = tmp_path / "live.parquet"
    synthetic_frame(12_000, seed=8, drifted=True).to_parquet(live)
    whole = run_check(
        version, live, DriftSettings(), NOW, report_path=tmp_path / "a.json", plot=False
    )
    monkeypatch.setattr(window_module, "CHUNK_ROWS", 997)
    chunked = run_check(
        version, live, DriftSettings(), NOW, report_path=tmp_path / "b.json", plot=False
    )
    for name, entry in whole.report["features"].items():
        other = chunked.report["features"][name]
        assert other["drifted"] == entry["drifted"]
        if entry["method"] in ("jensenshannon", "psi", "chi2"):
            assert other["score"] == pytest.approx(entry["score"], rel=1e-12)


def test_live_summary_state_is_bounded_by_the_profile_not_the_rows() -> None:
    reference = synthetic_frame(5_000, seed=9, drifted=False)
    features = schema_of(reference)
    profile = read_reference_profile(build_reference_profile(reference, features))
    numeric = [f["name"] for f in features if f["kind"] == "numeric"]
    categorical = [f["name"] for f in features if f["kind"] == "categorical"]
    summary = LiveSummary(profile, numeric, categorical, sample_size=1_000)
    sizes = []
    for seed in range(6):
        frame = synthetic_frame(4_000, seed=100 + seed, drifted=False)
        summary.add(Block(len(frame), [{c: frame[c].tolist() for c in frame.columns}]))
        sizes.append(summary.sample.nbytes + summary.bin_counts.nbytes)
    assert summary.rows == 24_000 and summary.sample.shape == (1_000, len(numeric))
    assert len(set(sizes)) == 1
    assert int(summary.bin_counts.sum()) == 24_000 * len(numeric)
    everything = pd.concat([synthetic_frame(4_000, seed=100 + s, drifted=False) for s in range(6)])
    n3: Any = profile["features"]["n3"]
    edges = np.asarray(n3["binEdges"])
    expected = np.bincount(
        np.searchsorted(edges, everything["n3"], side="left"), minlength=edges.size + 1
    )
    assert summary.bin_counts[numeric.index("n3"), : edges.size + 1].tolist() == expected.tolist()
    assert summary.categories["c2"].counts.sum() == 24_000


def test_arrow_columns_read_without_pandas_match_python_lists(tmp_path: Path) -> None:
    """Numbers read from Arrow buffers and dictionary codes counted with numpy give what
    the plain-list path gives, nulls, several chunks and sliced arrays included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlkube.runtime.drift.accumulate import category_counts, numeric_column

    numbers = [1.5, None, -2.0, 3, None, 7.25] * 50
    labels = ["a", None, "b", "a", "c", None] * 50
    path = tmp_path / "live.parquet"
    pq.write_table(
        pa.table(
            {"n": numbers, "i": [None if v is None else int(v) for v in numbers], "c": labels}
        ),
        path,
        row_group_size=70,
    )
    parquet = pq.ParquetFile(path, read_dictionary=["c"])
    table = pa.concat_tables(parquet.read_row_group(g) for g in range(parquet.num_row_groups))
    assert pa.types.is_dictionary(table.column("c").type)
    for name in ("n", "i"):
        column = table.column(name)
        assert column.num_chunks > 1
        for part in (column, column.slice(3, 100)):
            got, invalid = numeric_column(part)
            want, _ = numeric_column(part.to_pylist())
            np.testing.assert_array_equal(got, want)
            assert invalid == 0
    for part in (table.column("c"), table.column("c").slice(5, 101)):
        got_pairs, got_missing = category_counts(part)
        want_pairs, want_missing = category_counts(part.to_pylist())
        assert sorted(got_pairs) == sorted(want_pairs)
        assert got_missing == want_missing
