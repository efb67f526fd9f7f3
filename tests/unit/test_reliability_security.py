"""Security properties of issue 9, checked against the real code:

- no shell anywhere in the package (an AST scan: no ``shell=True``, ``os.system``,
  ``os.popen``, ``eval``/``exec``, nor a subprocess given one command string);
- artifacts load only through the store's safe loader: the sha256 is checked, a type
  outside the allow-list is refused even when the hash matches, the artifact must be a file
  inside its version directory, and a model recorded with another scikit-learn is refused;
- (issue 13's store and claim rules are in ``test_security_store.py``);
- path traversal in names, namespaces, versions and URIs is refused by the trainer;
- S3 credentials from the environment never reach stdout, stderr, the termination log,
  ``metadata.json`` or any other file in the store, on success or on failure.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlkube.runtime.artifact import ArtifactError, load_pipeline, read_metadata, write_version
from mlkube.runtime.train.pipeline import model_inputs
from reliability.workspace import Reference, churn_frame, model_manifest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "mlkube"
SHELL_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "execl"),
    ("os", "execlp"),
    ("os", "spawnl"),
    ("os", "spawnlp"),
    ("commands", "getoutput"),
}
SUBPROCESS_CALLS = {
    "run",
    "call",
    "check_call",
    "check_output",
    "Popen",
    "getoutput",
    "getstatusoutput",
}


def _shell_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
            found.append(f"{func.id}()")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            pair = (func.value.id, func.attr)
            if pair in SHELL_CALLS:
                found.append(".".join(pair))
            if func.value.id == "subprocess" and func.attr in SUBPROCESS_CALLS:
                if func.attr in ("getoutput", "getstatusoutput"):
                    found.append(f"subprocess.{func.attr}")
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant | ast.JoinedStr | ast.BinOp):
                    found.append(f"subprocess.{func.attr} with a command string")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append("shell=")
    return found


def test_the_scan_recognises_every_form_of_shell_use() -> None:
    sample = ast.parse(
        "import os, subprocess\n"
        "os.system('id')\nos.popen('id')\neval('1')\n"
        "subprocess.run('ls -l')\nsubprocess.run(['ls'], shell=True)\n"
        "subprocess.run(['ls'], shell=False)\nsubprocess.Popen(['ls'])\n"
    )
    assert sorted(_shell_uses(sample)) == sorted(
        [
            "os.system",
            "os.popen",
            "eval()",
            "subprocess.run with a command string",
            "shell=",
        ]
    )


def test_no_shell_anywhere_in_the_package() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30
    offenders = {
        str(path.relative_to(PACKAGE)): uses
        for path in modules
        if (uses := _shell_uses(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert offenders == {}


def _edit(version: Path, **changes: object) -> None:
    path = version / "metadata.json"
    document = json.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key].update(value)
        else:
            document[key] = value
    path.write_text(json.dumps(document))


def test_the_pristine_version_loads_and_predicts(version: Path) -> None:
    pipeline = load_pipeline(version)
    features = read_metadata(version)["features"]
    assert len(pipeline.predict(model_inputs(churn_frame(5), features))) == 5


def test_a_hash_from_the_operator_wins_over_metadata(version: Path) -> None:
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_pipeline(version, "0" * 64)


def test_an_untrusted_type_is_refused_even_with_a_matching_hash(version: Path) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    metadata = dict(read_metadata(version))
    metadata.pop("artifact")
    evil = version.parent / "v2"
    written = write_version(evil, Pipeline([("run", FunctionTransformer(os.system))]), metadata)
    with pytest.raises(ArtifactError, match=r"untrusted types: (posix|os)\.system"):
        load_pipeline(evil, written["artifact"]["sha256"])


@pytest.mark.parametrize("name", ["../outside.skops", "/etc/passwd", "..", "", "a/model.skops"])
def test_the_artifact_must_be_a_file_in_its_version_directory(version: Path, name: str) -> None:
    shutil.copy(version / "model.skops", version.parent / "outside.skops")
    _edit(version, artifact={"file": name})
    with pytest.raises(ArtifactError, match="not a file inside the version directory"):
        load_pipeline(version)


def test_another_scikit_learn_minor_is_refused_a_patch_level_is_not(version: Path) -> None:
    import sklearn

    major, minor, *_ = sklearn.__version__.split(".")
    _edit(version, libraries={"scikit-learn": f"{major}.{int(minor) + 1}.0"})
    with pytest.raises(ArtifactError, match="trained with scikit-learn"):
        load_pipeline(version)
    _edit(version, libraries={"scikit-learn": f"{major}.{minor}.99"})
    assert load_pipeline(version) is not None


def _train(args: list[str]) -> tuple[int, str, str]:
    from mlkube.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("--namespace", "../../etc", "namespace"),
        ("--namespace", "kube-system/../x", "namespace"),
        ("--version", "-1", "--version"),
        ("--version", "0", "--version"),
    ],
)
def test_traversal_in_flags_is_refused(
    reference: Reference, tmp_path: Path, flag: str, value: str, fragment: str
) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(model_manifest(str(reference.data))))
    code, _, err = _train(["-f", str(manifest), "--store", str(tmp_path / "store"), flag, value])
    assert code == 2 and fragment in err.splitlines()[-1]
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("v*"))


@pytest.mark.parametrize("name", ["../evil", "a/b", "UPPER", "x" * 41, "..", "."])
def test_traversal_in_model_names_is_refused(
    reference: Reference, tmp_path: Path, name: str
) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(model_manifest(str(reference.data), name=name)))
    code, _, err = _train(["-f", str(manifest), "--store", str(tmp_path / "store")])
    assert code == 2 and "metadata.name" in err.splitlines()[-1]
    assert not (tmp_path / "store").exists() or list((tmp_path / "store").rglob("*")) == []


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://claim/../../etc/passwd",
        "pvc://../etc/passwd",
        "pvc://claim/a/../../../x",
        "sklearn://../x",
        "sklearn://iris/../../etc",
        "file:///etc/shadow-does-not-exist",
    ],
)
def test_traversal_in_data_uris_is_refused(tmp_path: Path, uri: str) -> None:
    """(Exit 2 alone; test_security_store.py proves nothing outside a claim is read.)"""
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(model_manifest(uri)))
    code, _, err = _train(["-f", str(manifest), "--store", str(tmp_path / "store")])
    assert code == 2
    assert err.splitlines()[-1].startswith("mlkube train: error: ")


SECRET_KEY = "s3cr3t+RELIABILITY/value0123456789abcdef"
ACCESS_KEY = "AKIARELIABILITY0001"


def test_s3_credentials_never_reach_output_status_or_the_store(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for key, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="datasets")
    client.put_object(
        Bucket="datasets", Key="churn.csv", Body=churn_frame(200).to_csv(index=False).encode()
    )
    outputs: list[str] = []
    for name, uri in (
        ("ok", "s3://datasets/churn.csv"),
        ("missing", "s3://datasets/no.csv"),
        ("nobucket", "s3://elsewhere/x.csv"),
    ):
        manifest = tmp_path / f"{name}.json"
        manifest.write_text(json.dumps(model_manifest(uri, name=name)))
        log = tmp_path / f"{name}.log"
        code, out, err = _train(
            ["-f", str(manifest), "--store", str(tmp_path / "store"), "--termination-log", str(log)]
        )
        assert code == (0 if name == "ok" else 2), err
        outputs += [out, err, log.read_text()]
    assert (tmp_path / "store" / "default" / "ok" / "v1" / "metadata.json").exists()
    outputs += [
        p.read_bytes().decode("latin-1") for p in (tmp_path / "store").rglob("*") if p.is_file()
    ]
    leaks = [text[:200] for text in outputs if SECRET_KEY in text or ACCESS_KEY in text]
    assert leaks == []


def _model_body(storage: str, data_uri: str, estimator: str = "sklearn.svm.SVC") -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {
            "storage": {"uri": storage},
            "training": {
                "estimator": {"class": estimator},
                "data": {"uri": data_uri, "target": "t"},
            },
        },
    }


@pytest.mark.parametrize(
    ("storage", "data_uri", "fragment"),
    [
        ("pvc://models/../../etc", "sklearn://iris", "'..' and '.' segments"),
        ("pvc://models/a/./b", "sklearn://iris", "'..' and '.' segments"),
        ("pvc://models", "pvc://data/../../etc/shadow", "'..' and '.' segments"),
        ("pvc://models", "sklearn://iris", None),
        ("pvc://models/team-a", "pvc://data/churn/2024.csv", None),
    ],
)
def test_the_operator_refuses_traversal_in_storage_and_data_uris(
    storage: str, data_uri: str, fragment: str | None
) -> None:
    from mlkube.controller.settings import OperatorSettings
    from mlkube.controller.spec import training_problem

    problem = training_problem(_model_body(storage, data_uri), None, OperatorSettings())
    assert (problem is None) if fragment is None else (fragment in str(problem))


@pytest.mark.parametrize("estimator", ["os.system", "sklearnx.evil.Thing", "builtins.eval", ""])
def test_the_operator_enforces_the_estimator_allow_list(estimator: str) -> None:
    from mlkube.controller.settings import OperatorSettings
    from mlkube.controller.spec import training_problem

    problem = training_problem(
        _model_body("pvc://m", "sklearn://iris", estimator), None, OperatorSettings()
    )
    assert problem is not None and ("allow-list" in problem or "missing" in problem)


@pytest.mark.parametrize(
    ("name", "schedule", "fragment"),
    [
        ("a" * 41, None, "too long"),
        ("churn", "61 * * * *", "not a valid cron expression"),
        ("churn", "0 3 * * 0", None),
        ("a" * 40, None, None),
    ],
)
def test_the_operator_refuses_names_and_schedules_it_cannot_honour(
    name: str, schedule: str | None, fragment: str | None
) -> None:
    from mlkube.controller.settings import OperatorSettings
    from mlkube.controller.spec import training_problem

    body = _model_body("pvc://m", "sklearn://iris")
    body["metadata"]["name"] = name
    if schedule:
        body["spec"]["training"]["schedule"] = schedule
    problem = training_problem(body, None, OperatorSettings())
    assert (problem is None) if fragment is None else (fragment in str(problem))
