"""The compatibility gate: is a new schema of a published message a breaking change?

``compare(old, new)`` walks two JSON Schemas of the same message (following local
``$ref``s into ``$defs``) and returns one ``Breaking`` per change that could make a
message valid under the old schema fail under the new one, or make an integrator's
code wrong: a field removed or renamed, retyped (type, enum values, format,
nullability), newly required, a constraint narrowed, or the message's subject,
CloudEvents type or kind changed. Additive changes pass: a new optional field,
widened constraints, a new message, a new major version beside the old.
``check_registry`` runs the gate for every registered message against the checked-in
schema files. The remedy for a breaking change is always the same: keep the old
version and add ``v<N+1>`` beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aifactory.contracts.registry import Registry
from aifactory.schema.jsonschema import EXTENSION_KEY, message_schema

BreakingKind = Literal[
    "field_removed",
    "field_retyped",
    "required_field_added",
    "field_became_required",
    "constraint_narrowed",
    "subject_changed",
    "ce_type_changed",
    "kind_changed",
    "message_removed",
    "unreadable_schema",
]
FindingKind = Literal[BreakingKind, "not_exported"]

_METADATA_KINDS: dict[str, BreakingKind] = {
    "subject": "subject_changed",
    "ce_type": "ce_type_changed",
    "kind": "kind_changed",
}
# (inclusive keyword, exclusive keyword, sign): sign * value grows as the bound tightens.
_BOUNDS = (("minimum", "exclusiveMinimum", 1), ("maximum", "exclusiveMaximum", -1))
_MIN_COUNTS = ("minLength", "minItems", "minProperties")
_MAX_COUNTS = ("maxLength", "maxItems", "maxProperties")
_Branch = tuple[str, dict[str, Any]]
"""A resolved union member and the ``$ref`` it was reached through ("" if inline)."""
_ANY_TYPE = frozenset({"string", "integer", "number", "boolean", "object", "array", "null"})


@dataclass(frozen=True, slots=True)
class Breaking:
    """One breaking difference between two schemas of the same message."""

    kind: BreakingKind
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Finding:
    """The gate's verdict on one checked-in schema file (``schema_path`` under schemas/)."""

    schema_path: str
    kind: FindingKind
    path: str
    message: str

    @property
    def breaking(self) -> bool:
        """Whether this finding must fail the gate (everything but "not yet exported")."""
        return self.kind != "not_exported"

    def __str__(self) -> str:
        return f"{self.schema_path} {self.path}: {self.message}"


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Breaking]:
    """Every breaking change from ``old`` to ``new``, two JSON Schemas of one message."""
    walker = _Walker(old, new)
    walker.pair(("#", old), ("#", new), "$")
    old_ext, new_ext = old.get(EXTENSION_KEY), new.get(EXTENSION_KEY)
    if isinstance(old_ext, dict) and isinstance(new_ext, dict):
        walker.metadata(old_ext, new_ext)
    return walker.found


def check_registry(registry: Registry, schemas_dir: Path) -> list[Finding]:
    """Compare every registered message with its checked-in schema under ``schemas_dir``.

    A registered message without a file is new (``not_exported``, not breaking); a
    file whose message is no longer registered is ``message_removed`` (breaking).
    """
    findings: list[Finding] = []
    registered: set[str] = set()
    for spec in registry:
        registered.add(spec.schema_path)
        file = schemas_dir / spec.schema_path
        if not file.is_file():
            message = f"{spec.ce_type} is not yet exported"
            findings.append(Finding(spec.schema_path, "not_exported", "$", message))
            continue
        try:
            breaking = compare(_load_schema(file), message_schema(spec))
        except (OSError, ValueError, TypeError) as exc:
            findings.append(Finding(spec.schema_path, "unreadable_schema", "$", str(exc)))
            continue
        findings += [Finding(spec.schema_path, b.kind, b.path, b.message) for b in breaking]
    for file in sorted(schemas_dir.rglob("*.json")) if schemas_dir.is_dir() else ():
        relative = file.relative_to(schemas_dir).as_posix()
        if relative not in registered:
            findings.append(
                Finding(
                    relative,
                    "message_removed",
                    "$",
                    "the message of this published schema is no longer registered; "
                    "keep serving it beside any new version",
                )
            )
    return findings


def _load_schema(file: Path) -> dict[str, Any]:
    schema = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(schema, dict):
        raise TypeError(f"{file.name} is not a JSON Schema object")
    return schema


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _types(node: dict[str, Any]) -> frozenset[str]:
    """The JSON types a (resolved, single-branch) schema node admits."""
    declared = node.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(declared)
    if "enum" in node:
        return frozenset(_json_type(v) for v in node["enum"])
    if "const" in node:
        return frozenset({_json_type(node["const"])})
    return _ANY_TYPE


def _describe(types: frozenset[str]) -> str:
    return "any" if types >= _ANY_TYPE - {"null"} else " | ".join(sorted(types))


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if name.isidentifier() else f"{path}[{json.dumps(name)}]"


class _Walker:
    """Walks an old and a new schema side by side, collecting ``Breaking`` findings."""

    def __init__(self, old_doc: dict[str, Any], new_doc: dict[str, Any]) -> None:
        self.old_doc = old_doc
        self.new_doc = new_doc
        self.found: list[Breaking] = []
        self._seen: set[tuple[str, str]] = set()

    def report(self, kind: BreakingKind, path: str, message: str) -> None:
        self.found.append(Breaking(kind, path, message))

    # ------------------------------------------------------------ metadata

    def metadata(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for key, kind in _METADATA_KINDS.items():
            if key in old and old[key] != new.get(key):
                self.report(
                    kind,
                    f"$.{EXTENSION_KEY}.{key}",
                    f"{key} changed from {old[key]!r} to {new.get(key)!r}",
                )
        for key in ("reply", "error_reply"):
            if isinstance(old.get(key), dict):
                if isinstance(new.get(key), dict):
                    self.node(old[key], new[key], f"$.{EXTENSION_KEY}.{key}")
                elif "kind" not in old or old["kind"] == new.get("kind"):
                    self.report("field_removed", f"$.{EXTENSION_KEY}.{key}", f"the {key} vanished")

    # ------------------------------------------------------------ schema nodes

    def node(self, old: Any, new: Any, path: str) -> None:
        """Compare two schema nodes (either may be a ``$ref``, a union or nullable)."""
        if not isinstance(old, dict) or not isinstance(new, dict):
            return
        old_alts, old_null = self._branches(old, self.old_doc)
        new_alts, new_null = self._branches(new, self.new_doc)
        if old_null and not new_null:
            self.report("field_retyped", path, "no longer accepts null")
        if len(old_alts) == 1 and len(new_alts) == 1:
            self.pair(old_alts[0], new_alts[0], path)
            return
        for alt in old_alts:
            match = _match_branch(alt[1], new_alts)
            if match is None:
                self.report(
                    "field_retyped", path, f"union member {_label(alt[1])} is no longer accepted"
                )
            else:
                self.pair(alt, match, path)

    def _branches(self, node: dict[str, Any], doc: dict[str, Any]) -> tuple[list[_Branch], bool]:
        """The non-null alternatives of ``node`` (resolved, with the ``$ref`` each came
        from) and whether it admits null."""
        ref = _ref_of(node)
        node = _resolve(node, doc)
        union = node.get("anyOf", node.get("oneOf"))
        if not isinstance(union, list):
            types = _types(node)
            if "null" in types and types != _ANY_TYPE:
                if types == {"null"}:
                    return [], True
                return [(ref, _without_null(node))], True
            return [(ref, node)], False
        alternatives: list[_Branch] = []
        nullable = False
        for member in union:
            inner, inner_null = self._branches(member, doc)
            alternatives += inner
            nullable = nullable or inner_null
        return alternatives, nullable

    def pair(self, old: _Branch, new: _Branch, path: str) -> None:
        """Compare two resolved branches, once per pair of named types (recursion stops)."""
        if old[0] and new[0]:
            key = (old[0], new[0])
            if key in self._seen:
                return
            self._seen.add(key)
        self.single(old[1], new[1], path)

    def single(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        """Compare two resolved, non-union schema nodes."""
        old_types, new_types = _types(old) - {"null"}, _types(new) - {"null"}
        lost = old_types - new_types
        if "number" in new_types:
            lost -= {"integer"}
        if lost:
            self.report(
                "field_retyped",
                path,
                f"type changed from {_describe(old_types)} to {_describe(new_types)}",
            )
            return
        self._values(old, new, path)
        self._bounds(old, new, path)
        if "object" in old_types:
            self._object(old, new, path)
        if "array" in old_types:
            self._array(old, new, path)

    def _values(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        if "enum" in new:
            allowed = new["enum"]
            if "enum" in old:
                lost = [v for v in old["enum"] if v not in allowed]
                if lost:
                    self.report("field_retyped", path, f"enum values removed: {lost!r}")
            elif "const" in old:
                if old["const"] not in allowed:
                    self.report("field_retyped", path, f"value {old['const']!r} no longer allowed")
            else:
                self.report("field_retyped", path, f"now restricted to the values {allowed!r}")
        if "const" in new and old.get("const", old.get("enum")) not in (
            new["const"],
            [new["const"]],
        ):
            self.report("field_retyped", path, f"now restricted to the value {new['const']!r}")
        for keyword in ("format", "contentEncoding", "contentMediaType"):
            if keyword in new and old.get(keyword) != new[keyword]:
                change = (
                    f"changed from {old[keyword]!r} to {new[keyword]!r}"
                    if keyword in old
                    else f"{new[keyword]!r} added"
                )
                self.report("field_retyped", path, f"{keyword} {change}")

    def _bounds(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        for inclusive, exclusive, sign in _BOUNDS:
            before = _tightest(old, inclusive, exclusive, sign)
            after = _tightest(new, inclusive, exclusive, sign)
            if after is not None and (before is None or after > before):
                self.report(
                    "constraint_narrowed",
                    path,
                    f"{_show_bound(before, inclusive, exclusive, sign)} narrowed to "
                    f"{_show_bound(after, inclusive, exclusive, sign)}",
                )
        for keyword in _MIN_COUNTS:
            if keyword in new and new[keyword] > old.get(keyword, 0):
                self._raised(path, keyword, old.get(keyword), new[keyword], "raised")
        for keyword in _MAX_COUNTS:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                self._raised(path, keyword, old.get(keyword), new[keyword], "lowered")
        if "pattern" in new and old.get("pattern") != new["pattern"]:
            self._raised(path, "pattern", old.get("pattern"), new["pattern"], "changed")
        multiple = new.get("multipleOf")
        if multiple is not None and ("multipleOf" not in old or old["multipleOf"] % multiple != 0):
            self._raised(path, "multipleOf", old.get("multipleOf"), multiple, "changed")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            self.report("constraint_narrowed", path, "items must now be unique")

    def _raised(self, path: str, keyword: str, before: Any, after: Any, verb: str) -> None:
        if before is None:
            self.report("constraint_narrowed", path, f"{keyword} {after!r} added")
        else:
            self.report(
                "constraint_narrowed", path, f"{keyword} {verb} from {before!r} to {after!r}"
            )

    def _object(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        for name, old_field in old_props.items():
            where = _child(path, name)
            if name not in new_props:
                self.report("field_removed", where, f"field {name!r} was removed (or renamed)")
                continue
            self.node(old_field, new_props[name], where)
            if name in new_required and name not in old_required:
                self.report("field_became_required", where, f"field {name!r} became required")
        for name in new_props:
            if name not in old_props and name in new_required:
                self.report(
                    "required_field_added",
                    _child(path, name),
                    f"new field {name!r} is required; give it a default",
                )
        self._additional(old, new, path)

    def _additional(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        before = old.get("additionalProperties", True)
        after = new.get("additionalProperties", True)
        if "propertyNames" in new:
            self.node(old.get("propertyNames", {}), new["propertyNames"], f"{path}.<keys>")
        if before is False or after is True or after == {}:
            return
        if after is False:
            self.report("constraint_narrowed", path, "additional properties are no longer accepted")
        elif before is True or before == {}:
            self.report("constraint_narrowed", path, "additional properties are now constrained")
        else:
            self.node(before, after, f"{path}.*")

    def _array(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_prefix: list[Any] = old.get("prefixItems", [])
        new_prefix: list[Any] = new.get("prefixItems", [])
        for index, (before, after) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            self.node(before, after, f"{path}[{index}]")
        if "items" in new and new["items"] is not True:
            before = old.get("items", {})
            if new["items"] is False:
                if before is not False:
                    self.report("constraint_narrowed", path, "no items beyond the fixed ones")
            elif before is not False:
                self.node(before, new["items"], f"{path}[*]")


def _ref_of(node: dict[str, Any]) -> str:
    ref = node.get("$ref")
    return ref if isinstance(ref, str) else ""


def _resolve(node: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s (``#`` or ``#/...`` JSON pointers); siblings override."""
    for _ in range(64):
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**_pointer(doc, ref), **siblings}
    raise ValueError("$ref chain too long (a reference cycle?)")


def _pointer(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    if ref != "#" and not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    target: Any = doc
    for token in ref[2:].split("/") if ref != "#" else ():
        key = token.replace("~1", "/").replace("~0", "~")
        try:
            target = target[int(key)] if isinstance(target, list) else target[key]
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"$ref {ref!r} does not resolve in its document") from None
    if not isinstance(target, dict):
        raise TypeError(f"$ref {ref!r} does not point at a schema object")
    return target


def _without_null(node: dict[str, Any]) -> dict[str, Any]:
    stripped = dict(node)
    declared = node.get("type")
    if isinstance(declared, list):
        rest = [t for t in declared if t != "null"]
        stripped["type"] = rest[0] if len(rest) == 1 else rest
    if "enum" in node:
        stripped["enum"] = [v for v in node["enum"] if v is not None]
    return stripped


def _label(node: dict[str, Any]) -> str:
    title = node.get("title")
    return repr(title) if isinstance(title, str) else _describe(_types(node) - {"null"})


def _match_branch(old: dict[str, Any], candidates: list[_Branch]) -> _Branch | None:
    """The new union member that corresponds to ``old``: same types and title, else the
    only member with the same types."""
    same_types = [c for c in candidates if _types(c[1]) == _types(old)]
    for candidate in same_types:
        if candidate[1].get("title") == old.get("title"):
            return candidate
    return same_types[0] if len(same_types) == 1 else None


def _tightest(
    node: dict[str, Any], inclusive: str, exclusive: str, sign: int
) -> tuple[float, int] | None:
    """The tightest bound ``node`` sets, as (sign * value, 1 if exclusive): larger is tighter."""
    bounds = [
        (sign * float(node[keyword]), flag)
        for keyword, flag in ((inclusive, 0), (exclusive, 1))
        if isinstance(node.get(keyword), int | float) and not isinstance(node.get(keyword), bool)
    ]
    return max(bounds) if bounds else None


def _show_bound(bound: tuple[float, int] | None, inclusive: str, exclusive: str, sign: int) -> str:
    if bound is None:
        return f"no {inclusive}"
    return f"{exclusive if bound[1] else inclusive} {sign * bound[0]:g}"
