"""What someone who can write to the store can do to a version: rewrite a node of its
``model.skops`` and make ``metadata.json`` agree, as the security tests need to show.

``rewrite_node_into_call`` turns the first plain value in the skops schema into a
``ConstructorFromReduceNode`` that calls ``module.name(argument)`` on load (skops calls
whatever that node's ``__class__`` names), re-zips the file and records its new sha256,
so only the loader's type allow-list stands between the file and the call.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any


def _call_node(module: str, name: str, argument: str) -> dict[str, Any]:
    text = {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(argument),
        "is_json": True,
    }
    arguments = {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": [text],
    }
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": arguments,
    }


def _replace_first_value(schema: Any, replacement: dict[str, Any]) -> bool:
    stack = [schema]
    while stack:
        item = stack.pop()
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in list(children):
            if isinstance(child, dict) and child.get("__loader__") == "JsonNode":
                item[key] = replacement
                return True
            if isinstance(child, dict | list):
                stack.append(child)
    return False


def rewrite_node_into_call(version: Path, module: str, name: str, argument: str) -> None:
    """Rewrites one node of ``version/model.skops`` into ``module.name(argument)``."""
    artifact = version / "model.skops"
    with zipfile.ZipFile(artifact) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    schema = json.loads(members["schema.json"])
    assert _replace_first_value(schema, _call_node(module, name, argument)), "no value node"
    members["schema.json"] = json.dumps(schema).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for filename, content in members.items():
            target.writestr(filename, content)
    artifact.write_bytes(buffer.getvalue())
    metadata_path = version / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["artifact"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    metadata["artifact"]["bytes"] = len(buffer.getvalue())
    metadata_path.write_text(json.dumps(metadata))
