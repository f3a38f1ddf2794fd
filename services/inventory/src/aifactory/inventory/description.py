"""Reading a factory description (YAML) into validated declarations, with line numbers.

The file declares ``sites``, ``racks``, ``nodes`` (ids may be host ranges such as
``gpu-a[001-128]``) and ``dedications``; docs/inventory.md shows the format. Every
problem - a YAML syntax error, a duplicate key, an unknown field, a wrong type, a
negative count, an unknown accelerator model, a malformed range, a node declared
twice with different hardware - raises ``DescriptionError`` naming the 1-based line.
Whether sites and racks referenced exist is checked later, against the inventory
(see ``planning``). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import msgspec
import yaml

from aifactory.contracts.inventory.v1 import (
    Accelerator,
    AcceleratorModel,
    DedicationTarget,
    InitialState,
    Jurisdiction,
    Label,
    LabelValue,
    NodeSpec,
    SiteId,
    TenantId,
)
from aifactory.inventory.errors import DescriptionError
from aifactory.inventory.ranges import RangeError, expand_ids

_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_PATH_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)|unknown field `([A-Za-z_]+)`")


class _Located(dict[str, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict[str, int]


_SafeLoader: type[yaml.SafeLoader] = (
    yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader  # type: ignore[assignment]
)


class _LineLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """Safe YAML loader (libyaml if present): mappings are ``_Located``, duplicate keys errors."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Located:
        mapping = _Located()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise DescriptionError(
                    f"keys must be strings, got {key!r}", line=key_node.start_mark.line + 1
                )
            if key in mapping:
                raise DescriptionError(f"duplicate key {key!r}", line=key_node.start_mark.line + 1)
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _LineLoader.construct_mapping,
)


# ------------------------------------------------------------------ entry shapes


class _Entry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of the file's entries: unknown keys are errors (typos do not pass silently)."""


class _SiteEntry(_Entry, kw_only=True):
    id: SiteId
    name: str = ""
    region: str = ""
    jurisdiction: Jurisdiction


class _RackEntry(_Entry, kw_only=True):
    id: str
    site: SiteId
    kind: str
    nvlink_domain_size: int = 0


class _NodeEntry(_Entry, kw_only=True):
    id: str
    site: SiteId
    rack: str
    model: AcceleratorModel
    accelerator_count: int
    accelerator_memory_gib: int
    cpu_cores: int
    ram_gib: int
    interconnect: str = ""
    labels: dict[Label, LabelValue] = msgspec.field(default_factory=dict)
    accelerators: list[Accelerator] = msgspec.field(default_factory=list)
    initial_state: InitialState = "available"


class _DedicationEntry(_Entry, kw_only=True):
    node: str | None = None
    rack: str | None = None
    tenant: TenantId | None


# Numeric bounds are checked here (not via Meta on the entries) so the message names
# the field in words an operator reads in a YAML file.
_BOUNDS: dict[str, tuple[int, int]] = {
    "accelerator_count": (1, 64),
    "accelerator_memory_gib": (1, 4096),
    "cpu_cores": (1, 4096),
    "ram_gib": (1, 65536),
    "nvlink_domain_size": (0, 1152),
}


E = TypeVar("E", bound=_Entry)


# ------------------------------------------------------------------ declarations


@dataclass(frozen=True, slots=True)
class SiteDecl:
    """A site as the description declares it."""

    site_id: str
    name: str
    region: str
    jurisdiction: str
    line: int


@dataclass(frozen=True, slots=True)
class RackDecl:
    """A rack as the description declares it."""

    rack_id: str
    site_id: str
    kind: str
    nvlink_domain_size: int
    line: int


@dataclass(frozen=True, slots=True)
class NodeDecl:
    """A node as the description declares it (one per expanded id)."""

    spec: NodeSpec
    initial_state: InitialState
    line: int


@dataclass(frozen=True, slots=True)
class DedicationDecl:
    """A dedication of a node or rack to a tenant (None: the shared pool)."""

    target: DedicationTarget
    target_id: str
    tenant: str | None
    line: int


@dataclass(frozen=True, slots=True)
class Description:
    """A whole factory description, validated and with ranges expanded."""

    sites: list[SiteDecl]
    racks: list[RackDecl]
    nodes: list[NodeDecl]
    dedications: list[DedicationDecl]


D = TypeVar("D", SiteDecl, RackDecl, NodeDecl, DedicationDecl)

SECTIONS = ("version", "sites", "racks", "nodes", "dedications")


def _load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        line = min(line, text.count("\n") + (0 if text.endswith("\n") else 1))
        raise DescriptionError(f"malformed YAML: {exc.problem or exc}", line=line) from None
    except yaml.YAMLError as exc:
        raise DescriptionError(f"malformed YAML: {exc}") from None


def _convert(raw: Any, entry_type: type[E], where: str, line: int) -> E:
    if not isinstance(raw, _Located):
        raise DescriptionError("each entry must be a mapping", line=line, path=where)
    try:
        entry = msgspec.convert(raw, entry_type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_FIELD.search(message)
        field = (match.group(1) or match.group(2)) if match else ""
        at = raw.key_lines.get(field, raw.line)
        if field == "model":
            message += f" (known models: {', '.join(get_args(AcceleratorModel))})"
        raise DescriptionError(
            message.replace("`$.", "`"), line=at, path=f"{where}.{field}" if field else where
        ) from None
    for field, (low, high) in _BOUNDS.items():
        value = getattr(entry, field, None)
        if isinstance(value, int) and not low <= value <= high:
            raise DescriptionError(
                f"{field} must be between {low} and {high}, got {value}",
                line=raw.key_lines.get(field, raw.line),
                path=f"{where}.{field}",
            )
    return entry


def _ids(pattern: str, raw: _Located, where: str) -> list[str]:
    try:
        ids = expand_ids(pattern)
    except RangeError as exc:
        raise DescriptionError(
            str(exc), line=raw.key_lines.get("id", raw.line), path=where
        ) from None
    for one in ids:
        if len(one) > 63 or not _ID.match(one):
            raise DescriptionError(
                f"id {one!r} must be 1-63 characters of a-z, 0-9, '.' or '-', "
                "starting with a letter or digit",
                line=raw.key_lines.get("id", raw.line),
                path=f"{where}.id",
            )
    return ids


def _section(document: _Located, name: str) -> list[Any]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DescriptionError(
            f"'{name}' must be a list", line=document.key_lines.get(name, 0), path=name
        )
    return value


def _line_of(raw: Any, fallback: int) -> int:
    return raw.line if isinstance(raw, _Located) else fallback


def parse_description(text: str) -> Description:
    """Parse and validate a factory description; ``DescriptionError`` names the line."""
    document = _load(text)
    if document is None:
        raise DescriptionError("the description is empty")
    if not isinstance(document, _Located):
        raise DescriptionError("the description must be a mapping with sites, racks, nodes")
    for key in document:
        if key not in SECTIONS:
            raise DescriptionError(
                f"unknown section {key!r} (expected one of {', '.join(SECTIONS)})",
                line=document.key_lines[key],
                path=key,
            )
    if document.get("version", 1) != 1:
        raise DescriptionError(
            "only version 1 descriptions are understood",
            line=document.key_lines.get("version", 0),
            path="version",
        )
    return Description(
        sites=_sites(_section(document, "sites"), document),
        racks=_racks(_section(document, "racks"), document),
        nodes=_nodes(_section(document, "nodes"), document),
        dedications=_dedications(_section(document, "dedications"), document),
    )


def _sites(raw_sites: list[Any], document: _Located) -> list[SiteDecl]:
    seen: dict[str, SiteDecl] = {}
    for index, raw in enumerate(raw_sites):
        where = f"sites[{index}]"
        line = _line_of(raw, document.key_lines.get("sites", 0))
        entry = _convert(raw, _SiteEntry, where, line)
        decl = SiteDecl(entry.id, entry.name, entry.region, entry.jurisdiction, line)
        _check_duplicate(seen, entry.id, decl, where, "site")
    return list(seen.values())


def _racks(raw_racks: list[Any], document: _Located) -> list[RackDecl]:
    seen: dict[str, RackDecl] = {}
    for index, raw in enumerate(raw_racks):
        where = f"racks[{index}]"
        line = _line_of(raw, document.key_lines.get("racks", 0))
        entry = _convert(raw, _RackEntry, where, line)
        if not entry.kind or len(entry.kind) > 64:
            raise DescriptionError(
                "kind must be 1-64 characters", line=raw.key_lines.get("kind", line), path=where
            )
        for rack_id in _ids(entry.id, raw, where):
            decl = RackDecl(rack_id, entry.site, entry.kind, entry.nvlink_domain_size, line)
            _check_duplicate(seen, rack_id, decl, where, "rack")
    return list(seen.values())


def _nodes(raw_nodes: list[Any], document: _Located) -> list[NodeDecl]:
    seen: dict[str, NodeDecl] = {}
    for index, raw in enumerate(raw_nodes):
        where = f"nodes[{index}]"
        line = _line_of(raw, document.key_lines.get("nodes", 0))
        entry = _convert(raw, _NodeEntry, where, line)
        ids = _ids(entry.id, raw, where)
        if entry.accelerators and len(ids) > 1:
            raise DescriptionError(
                "accelerators (devices) can only be listed for a single node, not a range",
                line=raw.key_lines.get("accelerators", line),
                path=f"{where}.accelerators",
            )
        if entry.accelerators and len(entry.accelerators) != entry.accelerator_count:
            raise DescriptionError(
                f"{len(entry.accelerators)} accelerators listed but accelerator_count is "
                f"{entry.accelerator_count}",
                line=raw.key_lines.get("accelerators", line),
                path=f"{where}.accelerators",
            )
        if not _ID.match(entry.rack) or len(entry.rack) > 63:
            raise DescriptionError(
                f"rack id {entry.rack!r} is not a valid id",
                line=raw.key_lines.get("rack", line),
                path=f"{where}.rack",
            )
        if len(entry.interconnect) > 128:
            raise DescriptionError(
                "interconnect is longer than 128 characters",
                line=raw.key_lines.get("interconnect", line),
                path=f"{where}.interconnect",
            )
        labels = dict(sorted(entry.labels.items()))
        accelerators = sorted(entry.accelerators, key=lambda a: a.index)
        for node_id in ids:
            spec = NodeSpec(
                node_id=node_id,
                site_id=entry.site,
                rack_id=entry.rack,
                model=entry.model,
                accelerator_count=entry.accelerator_count,
                accelerator_memory_gib=entry.accelerator_memory_gib,
                cpu_cores=entry.cpu_cores,
                ram_gib=entry.ram_gib,
                interconnect=entry.interconnect,
                labels=labels,
                accelerators=accelerators,
            )
            _check_duplicate(
                seen, node_id, NodeDecl(spec, entry.initial_state, line), where, "node"
            )
    return list(seen.values())


def _dedications(raw_dedications: list[Any], document: _Located) -> list[DedicationDecl]:
    seen: dict[str, DedicationDecl] = {}
    for index, raw in enumerate(raw_dedications):
        where = f"dedications[{index}]"
        line = _line_of(raw, document.key_lines.get("dedications", 0))
        entry = _convert(raw, _DedicationEntry, where, line)
        if (entry.node is None) == (entry.rack is None):
            raise DescriptionError(
                "a dedication names exactly one of 'node' or 'rack'", line=line, path=where
            )
        target: Literal["node", "rack"] = "node" if entry.node is not None else "rack"
        pattern = entry.node if entry.node is not None else entry.rack
        assert pattern is not None
        for target_id in _ids(pattern, raw, where):
            decl = DedicationDecl(target, target_id, entry.tenant, line)
            _check_duplicate(seen, f"{target}:{target_id}", decl, where, "dedication of")
    return list(seen.values())


def _check_duplicate(seen: dict[str, D], key: str, decl: D, where: str, what: str) -> None:
    """Record ``decl``; a repeat is fine when identical, an error when it differs."""
    previous = seen.get(key)
    if previous is None:
        seen[key] = decl
        return
    if _same(previous, decl):
        return
    name = key.split(":", 1)[-1]
    raise DescriptionError(
        f"{what} {name!r} is declared again with different attributes "
        f"(first on line {previous.line})",
        line=decl.line,
        path=where,
    )


def _same(a: SiteDecl | RackDecl | NodeDecl | DedicationDecl, b: object) -> bool:
    if isinstance(a, NodeDecl) and isinstance(b, NodeDecl):
        return a.spec == b.spec and a.initial_state == b.initial_state
    names = [f.name for f in dataclasses.fields(a) if f.name != "line"]
    return all(getattr(a, n) == getattr(b, n) for n in names)
