"""The feedback route over real HTTP: an answer's id (sent or generated) carries a label
back; a batch with one bad label is refused whole (nothing written); accepted labels land
beside the inference log, one line each, and the rows of a batch request are numbered so
a label can name one of them."""

from __future__ import annotations

import json
from pathlib import Path

from serve_support import Server, cancer_data, v2_matrix, write_cancer_model

INFER = "/v2/models/cancer/infer"
FEEDBACK = "/v2/models/cancer/feedback"
X, Y, _ = cancer_data()


def _lines(root: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for p in sorted(root.glob("*/*/*.jsonl"))
        for line in p.read_text().splitlines()
    ]


def test_labels_follow_the_answers_ids_and_a_bad_batch_writes_nothing(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    server = Server.start(tmp_path, ["--model-dir", str(model_dir), "--sample-rate", "1"])
    try:
        generated = server.post(INFER, v2_matrix(X[:2])).json()["id"]
        sent = server.post(INFER, {**v2_matrix(X[2:3]), "id": "client-7"}).json()["id"]
        assert sent == "client-7" and generated
        refused = server.post(
            FEEDBACK,
            {"labels": [{"id": generated, "row": 0, "label": int(Y[0])},
                        {"id": generated, "row": 1, "label": "benign"}]},
        )  # fmt: skip
        assert refused.status == 400 and "labels[1].label" in refused.json()["error"]
        accepted = server.post(
            FEEDBACK,
            {"labels": [{"id": generated, "row": 1, "label": int(Y[1])},
                        {"id": "client-7", "label": int(Y[2])},
                        {"id": "never-seen", "label": 1}]},
        )  # fmt: skip
        assert accepted.status == 200 and accepted.json() == {"accepted": 3}
    finally:
        assert server.stop() == 0
    log = tmp_path / "default" / "cancer" / "inference"
    predictions = _lines(log)
    assert [(p["request_id"], p.get("row")) for p in predictions] == [
        (generated, 0), (generated, 1), ("client-7", None),
    ]  # fmt: skip
    labels = _lines(log / "labels")
    assert [(x["request_id"], x["row"], x["label"]) for x in labels] == [
        (generated, 1, int(Y[1])), ("client-7", 0, int(Y[2])), ("never-seen", 0, 1),
    ]  # fmt: skip
    assert all(x["model"] == "cancer" and x["version"] == 1 for x in labels)


def test_feedback_without_inference_logging_says_so(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    server = Server.start(tmp_path, ["--model-dir", str(model_dir), "--sample-rate", "0"])
    try:
        reply = server.post(FEEDBACK, {"labels": [{"id": "a", "label": 1}]})
        assert reply.status == 400 and "inferenceLogging" in reply.json()["error"]
    finally:
        assert server.stop() == 0
