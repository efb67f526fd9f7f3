"""The bad-input corpus (``tests/reliability/corpus.py``), fast form: every trainer,
server start-up, drift-check and inference case runs against the real programs and must
give a clear message where the user looks, no traceback, no 500, and an unchanged store.

Trainer and drift cases call ``mlkube.cli.main`` in-process to skip interpreter start-up;
server start-up cases and the HTTP cases use real child processes. ``make reliability``
runs every CLI case as a child process (``benchmarks/reliability/run.py``). Resource
cases need the operator and live in ``tests/integration/test_reliability_resources.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.corpus import ALL_CASES, CLI_CASES, INFER, RESOURCES, CliCase
from reliability.runner import Outcome, run_cli_case, run_http_cases
from reliability.workspace import Reference, build_reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return build_reference(tmp_path_factory.mktemp("reference"))


def _explain(outcome: Outcome) -> str:
    return f"{outcome.id}: {'; '.join(outcome.problems)} (saw: {outcome.seen[:300]!r})"


def test_corpus_covers_every_surface_with_at_least_40_cases() -> None:
    ids = [case.id for case in ALL_CASES]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids), "case ids must be unique"
    surfaces = {case.surface for case in ALL_CASES}
    assert surfaces == {"train", "serve", "infer", "drift", "resource"}
    assert all(case.expect for case in ALL_CASES), "every case names the message it expects"
    assert len(RESOURCES) >= 8 and len(INFER) >= 15


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_cli_case_fails_clearly_and_leaves_the_store_untouched(
    case: CliCase, reference: Reference, tmp_path: Path
) -> None:
    outcome = run_cli_case(case, reference, tmp_path, in_process=True)
    assert outcome.passed, _explain(outcome)


def test_inference_cases_get_4xx_with_a_message_and_the_server_survives(
    reference: Reference, tmp_path: Path
) -> None:
    outcomes = run_http_cases(INFER, reference, tmp_path)
    failed = [_explain(o) for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed)
    assert len(outcomes) == len(INFER) + 1
