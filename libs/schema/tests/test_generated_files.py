"""The checked-in schemas and AsyncAPI document match the code, and the gate passes.

These are the tests CI relies on: regenerating the documents must change nothing
(otherwise run ``uv run aifactory contracts export``), and every registered message
must be compatible with its checked-in schema (otherwise add a new major version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from aifactory.contracts.catalog import load_all
from aifactory.schema.asyncapi import message_key
from aifactory.schema.compat import check_registry
from aifactory.schema.export import ASYNCAPI_PATH, SCHEMAS_DIR, check_all, write_all

REPO_ROOT = Path(__file__).resolve().parents[3]


def _generated_tree(root: Path) -> dict[str, bytes]:
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in (root / SCHEMAS_DIR).rglob("*")
        if p.is_file()
    }
    files[ASYNCAPI_PATH.as_posix()] = (root / ASYNCAPI_PATH).read_bytes()
    return files


def test_regenerating_the_documents_changes_nothing(tmp_path: Path) -> None:
    """Exporting into an empty tree yields byte for byte the checked-in schemas and AsyncAPI."""
    write_all(tmp_path)
    fresh = _generated_tree(tmp_path)
    checked_in = _generated_tree(REPO_ROOT)
    differences = sorted(
        [f"{path}: missing from the repository" for path in fresh.keys() - checked_in.keys()]
        + [f"{path}: no longer generated" for path in checked_in.keys() - fresh.keys()]
        + [
            f"{path}: differs from a fresh export"
            for path in fresh.keys() & checked_in.keys()
            if fresh[path] != checked_in[path]
        ]
    )
    assert not differences, (
        "the generated contract documents are stale; run `uv run aifactory contracts export`:\n  "
        + "\n  ".join(differences)
    )


def test_every_registered_message_is_compatible_with_its_checked_in_schema() -> None:
    """The compatibility gate finds nothing breaking and nothing unexported in the repository."""
    findings = check_registry(load_all(), REPO_ROOT / SCHEMAS_DIR)
    assert [str(f) for f in findings] == []


def test_check_all_is_clean_for_the_repository() -> None:
    """``check_all`` (what ``aifactory contracts check`` runs) reports no problem."""
    assert check_all(REPO_ROOT) == []


def _load_asyncapi() -> dict[str, Any]:
    document = yaml.safe_load((REPO_ROOT / ASYNCAPI_PATH).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_asyncapi_is_version_3_with_a_channel_per_registered_message() -> None:
    """docs/asyncapi.yaml is YAML for AsyncAPI 3.0.0 with one channel per message at its subject."""
    document = _load_asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "aifactory"
    assert document["servers"]["local"] == {
        "host": "localhost:4222",
        "protocol": "nats",
        "description": document["servers"]["local"]["description"],
    }
    for spec in load_all():
        channel = document["channels"][message_key(spec)]
        assert channel["address"] == spec.subject_pattern
        if spec.scope is not None:
            assert list(channel["parameters"]) == [spec.scope]
        operation = document["operations"][message_key(spec)]
        if spec.kind in ("cmd", "qry"):
            assert operation["action"] == "receive"
            assert len(operation["reply"]["messages"]) == 2
        else:
            assert operation["action"] == "send"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _resolves(document: dict[str, Any], ref: str) -> bool:
    target: Any = document
    for token in ref.removeprefix("#/").split("/"):
        if not isinstance(target, dict) or token not in target:
            return False
        target = target[token]
    return isinstance(target, dict)


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    """Every ``$ref`` in docs/asyncapi.yaml points at an object inside the document."""
    document = _load_asyncapi()
    dangling = [ref for ref in _refs(document) if not _resolves(document, ref)]
    assert dangling == []


def test_every_schema_file_is_a_draft_2020_12_document_with_metadata() -> None:
    """Each checked-in schema names its dialect, its $id and how its message travels."""
    for spec in load_all():
        schema = json.loads((REPO_ROOT / SCHEMAS_DIR / spec.schema_path).read_text("utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == spec.schema_id
        assert schema["x-aifactory"]["ce_type"] == spec.ce_type
        assert schema["x-aifactory"]["subject"] == spec.subject_pattern
        refs = _refs(schema)
        assert all(ref == "#" or _resolves(schema, ref) for ref in refs)
        if spec.reply is not None:
            assert schema["x-aifactory"]["error_reply"] == {"$ref": "#/$defs/ErrorReply"}
            assert schema["x-aifactory"]["reply_ce_type"] == spec.reply_ce_type
