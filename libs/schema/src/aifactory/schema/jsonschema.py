"""The JSON Schema (draft 2020-12) of each registered message, as integrators read it.

One self-contained document per message, generated from the msgspec Struct with
``msgspec.json.schema_components``: the payload's own schema sits at the top level
(``$id`` is the message's ``schema_id``, the value its CloudEvents ``dataschema``
carries), nested Structs live under ``$defs``, and an ``x-aifactory`` block says
how the message travels: CloudEvents type, subject, kind, major version and, for
commands and queries, the reply and the shared ``ErrorReply`` (both under ``$defs``,
referenced from ``x-aifactory.reply`` / ``x-aifactory.error_reply``). Rendering is
deterministic (sorted keys, 2-space indent, trailing newline) so the checked-in
files diff cleanly and a regeneration that changes nothing writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from aifactory.contracts.base import Contract
from aifactory.contracts.registry import MessageSpec, Registry
from aifactory.contracts.replies import ERROR_REPLY_TYPE, ErrorReply

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
EXTENSION_KEY = "x-aifactory"
DEFS_PREFIX = "#/$defs/"


def message_schema(spec: MessageSpec) -> dict[str, Any]:
    """The complete JSON Schema document of one registered message."""
    types: list[type[Contract]] = [spec.type]
    if spec.reply is not None:
        types += [spec.reply, ErrorReply]
    roots, components = msgspec.json.schema_components(types, ref_template=DEFS_PREFIX + "{name}")
    names = [_ref_name(root) for root in roots]
    root_ref = DEFS_PREFIX + names[0]
    # The message itself is the document: inline it, and point any self-reference at "#".
    components = {name: _retarget(body, root_ref) for name, body in components.items()}
    document: dict[str, Any] = dict(components.pop(names[0]))
    document["$schema"] = SCHEMA_DIALECT
    document["$id"] = spec.schema_id
    document["title"] = spec.type.__name__
    if spec.summary:
        document["description"] = spec.summary
    extension: dict[str, Any] = {
        "ce_type": spec.ce_type,
        "domain": spec.domain,
        "name": spec.name,
        "version": spec.version,
        "kind": spec.kind,
        "scope": spec.scope,
        "subject": spec.subject_pattern,
    }
    if spec.reply is not None:
        extension["reply"] = _retarget({"$ref": DEFS_PREFIX + names[1]}, root_ref)
        extension["reply_ce_type"] = spec.reply_ce_type
        extension["error_reply"] = _retarget({"$ref": DEFS_PREFIX + names[2]}, root_ref)
        extension["error_reply_ce_type"] = ERROR_REPLY_TYPE
    document[EXTENSION_KEY] = extension
    if components:
        document["$defs"] = components
    return document


def registry_schemas(registry: Registry) -> dict[str, dict[str, Any]]:
    """Every registered message's schema, keyed by its ``schema_path``."""
    return {spec.schema_path: message_schema(spec) for spec in registry}


def render_schema(schema: dict[str, Any]) -> str:
    """The canonical text of a schema file: sorted keys, 2-space indent, final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _ref_name(root: dict[str, Any]) -> str:
    ref = root.get("$ref", "")
    if not isinstance(ref, str) or not ref.startswith(DEFS_PREFIX):
        raise TypeError(f"expected a Struct reference from msgspec, got {root!r}")
    return ref.removeprefix(DEFS_PREFIX)


def _retarget(node: Any, root_ref: str) -> Any:
    """``node`` with every ``$ref`` to ``root_ref`` replaced by ``#`` (the document)."""
    if isinstance(node, dict):
        return {
            key: "#" if key == "$ref" and value == root_ref else _retarget(value, root_ref)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_retarget(item, root_ref) for item in node]
    return node
