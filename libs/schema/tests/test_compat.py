"""Proofs of the compatibility gate on old/new pairs of real msgspec Structs.

Each case builds the JSON Schema of an "old" and a "new" contract exactly as the
export does (rendered to JSON and read back, as from a checked-in file) and asserts
that the gate reports the right kind of breaking change at the right path, or,
for additive changes, nothing at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest

from aifactory.contracts.base import Contract
from aifactory.contracts.registry import Kind, MessageSpec, Registry, Scope, message
from aifactory.schema.compat import Breaking, check_registry, compare
from aifactory.schema.export import SCHEMAS_DIR, BreakingChangeError, check_all, write_all
from aifactory.schema.jsonschema import message_schema, render_schema

Size = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def schema(
    cls: type[Contract],
    *,
    kind: Kind = "evt",
    scope: Scope | None = "tenant",
    reply: type[Contract] | None = None,
    subject: str | None = None,
) -> dict[str, Any]:
    """The schema of ``cls`` registered as test.widget v1, as a checked-in file holds it."""
    spec = MessageSpec(
        type=cls,
        domain="test",
        name="widget",
        version=1,
        kind=kind,
        scope=scope,
        reply=reply,
        subject_override=subject,
    )
    parsed: dict[str, Any] = json.loads(render_schema(message_schema(spec)))
    return parsed


def kinds_and_paths(found: list[Breaking]) -> set[tuple[str, str]]:
    return {(b.kind, b.path) for b in found}


class Part(Contract, frozen=True, kw_only=True):
    serial: str
    revision: int = 0


class Widget(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


# Breaking changes, each against Widget.


class FieldRemoved(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class FieldRenamed(Contract, frozen=True, kw_only=True):
    widget_key: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class SizeRetyped(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: str
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class RequiredFieldAdded(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None
    site: str


class LabelRequired(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class MaxNarrowed(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Annotated[int, msgspec.Meta(ge=1, le=100)]
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class PatternNarrowed(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{1,8}$")] = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class PatternAdded(Contract, frozen=True, kw_only=True):
    widget_id: Annotated[str, msgspec.Meta(pattern=r"^w-")]
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class MinRaised(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Annotated[int, msgspec.Meta(gt=1, le=1000)]
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class EnumShrunk(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class MaxItemsLowered(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=5)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class NullableRemoved(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name = "nobody"
    part: Part | None = None


class PartV2(Contract, frozen=True, kw_only=True):
    serial: int
    revision: int = 0


class NestedRetyped(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: PartV2 | None = None


class FormatChanged(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: Annotated[str, msgspec.Meta(extra_json_schema={"format": "email"})] = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


BREAKING_CASES = [
    pytest.param(FieldRemoved, "field_removed", "$.label", id="field-removed"),
    pytest.param(FieldRenamed, "field_removed", "$.widget_id", id="field-renamed"),
    pytest.param(SizeRetyped, "field_retyped", "$.size", id="retyped-int-to-str"),
    pytest.param(RequiredFieldAdded, "required_field_added", "$.site", id="new-required-field"),
    pytest.param(LabelRequired, "field_became_required", "$.label", id="optional-to-required"),
    pytest.param(MaxNarrowed, "constraint_narrowed", "$.size", id="narrowed-max"),
    pytest.param(PatternNarrowed, "constraint_narrowed", "$.code", id="narrowed-pattern"),
    pytest.param(PatternAdded, "constraint_narrowed", "$.widget_id", id="pattern-added"),
    pytest.param(MinRaised, "constraint_narrowed", "$.size", id="minimum-made-exclusive"),
    pytest.param(EnumShrunk, "field_retyped", "$.color", id="enum-value-removed"),
    pytest.param(MaxItemsLowered, "constraint_narrowed", "$.tags", id="max-items-lowered"),
    pytest.param(NullableRemoved, "field_retyped", "$.owner", id="nullable-removed"),
    pytest.param(NestedRetyped, "field_retyped", "$.part.serial", id="nested-field-retyped"),
    pytest.param(FormatChanged, "field_retyped", "$.label", id="format-added"),
]


@pytest.mark.parametrize(("new", "kind", "path"), BREAKING_CASES)
def test_breaking_change_is_reported_with_its_kind_and_path(
    new: type[Contract], kind: str, path: str
) -> None:
    """Each deliberately broken schema is reported as breaking, with the right kind and path."""
    found = compare(schema(Widget), schema(new))
    assert (kind, path) in kinds_and_paths(found), [str(b) for b in found]
    assert all(b.message for b in found)


def test_renamed_field_reports_the_old_name_as_removed() -> None:
    """A rename is a removal of the old name (plus, here, a new required field)."""
    found = compare(schema(Widget), schema(FieldRenamed))
    assert kinds_and_paths(found) == {
        ("field_removed", "$.widget_id"),
        ("required_field_added", "$.widget_key"),
    }


def test_changed_subject_is_breaking() -> None:
    """Moving a message to another subject is reported as ``subject_changed``."""
    found = compare(schema(Widget), schema(Widget, subject="factory.elsewhere"))
    assert kinds_and_paths(found) == {("subject_changed", "$.x-aifactory.subject")}
    assert "factory.elsewhere" in found[0].message


def test_changed_scope_changes_the_subject_and_is_breaking() -> None:
    """Dropping the tenant scope token changes the documented subject: breaking."""
    found = compare(schema(Widget), schema(Widget, scope=None))
    assert ("subject_changed", "$.x-aifactory.subject") in kinds_and_paths(found)


def test_changed_ce_type_and_kind_are_breaking() -> None:
    """Edited ``x-aifactory.ce_type`` and ``kind`` are each reported."""
    old = schema(Widget)
    new = schema(Widget)
    new["x-aifactory"]["ce_type"] = "io.aifactory.test.gadget.v1"
    new["x-aifactory"]["kind"] = "tlm"
    assert kinds_and_paths(compare(old, new)) == {
        ("ce_type_changed", "$.x-aifactory.ce_type"),
        ("kind_changed", "$.x-aifactory.kind"),
    }


class Registration(Contract, frozen=True, kw_only=True):
    widget_id: str
    created: bool


class RegistrationWithoutCreated(Contract, frozen=True, kw_only=True):
    widget_id: str


def test_reply_schema_of_a_command_is_gated_too() -> None:
    """Removing a field from a command's reply is breaking, at the reply's path."""
    old = schema(Widget, kind="cmd", scope=None, reply=Registration)
    new = schema(Widget, kind="cmd", scope=None, reply=RegistrationWithoutCreated)
    assert kinds_and_paths(compare(old, new)) == {
        ("field_removed", "$.x-aifactory.reply.created"),
    }


def test_tightened_additional_properties_is_breaking() -> None:
    """An open object that stops accepting unknown members is a narrowed constraint."""
    old = {"type": "object", "properties": {"a": {"type": "string"}}}
    new = {**old, "additionalProperties": False}
    assert kinds_and_paths(compare(old, new)) == {("constraint_narrowed", "$")}


def test_dict_value_type_change_is_breaking() -> None:
    """A ``dict[str, str]`` that becomes ``dict[str, int]`` is retyped at ``.*``."""
    old = {"type": "object", "additionalProperties": {"type": "string"}}
    new = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert kinds_and_paths(compare(old, new)) == {("field_retyped", "$.*")}


def test_union_member_removed_is_breaking() -> None:
    """``int | str`` narrowed to ``int`` no longer accepts strings."""
    old = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    new = {"type": "integer"}
    assert kinds_and_paths(compare(old, new)) == {("field_retyped", "$")}


# Additive changes, each against Widget.


class OptionalFieldAdded(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None
    site: str = ""


class MaxWidened(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Annotated[int, msgspec.Meta(ge=0, le=10_000)]
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
    owner: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    part: Part | None = None


class EnumGrownAndNullable(Contract, frozen=True, kw_only=True):
    widget_id: str | None
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green", "blue"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class RequiredMadeOptional(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size = 1
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: Part | None = None


class PartWithNote(Contract, frozen=True, kw_only=True):
    serial: str
    revision: int = 0
    note: str = ""


class NestedOptionalAdded(Contract, frozen=True, kw_only=True):
    widget_id: str
    size: Size
    code: Code = "a"
    label: str = ""
    color: Literal["red", "green"] = "red"
    tags: Annotated[list[str], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)
    owner: Name | None = None
    part: PartWithNote | None = None


@pytest.mark.parametrize(
    "new",
    [
        pytest.param(Widget, id="unchanged"),
        pytest.param(OptionalFieldAdded, id="new-optional-field"),
        pytest.param(MaxWidened, id="widened-bounds"),
        pytest.param(EnumGrownAndNullable, id="enum-grown-and-nullable-added"),
        pytest.param(RequiredMadeOptional, id="required-made-optional"),
        pytest.param(NestedOptionalAdded, id="nested-optional-field"),
    ],
)
def test_additive_change_passes(new: type[Contract]) -> None:
    """An additive or widening change is not reported at all."""
    assert compare(schema(Widget), schema(new)) == []


class Tree(Contract, frozen=True, kw_only=True):
    label: str
    children: list[Tree] = msgspec.field(default_factory=list)
    parent: Branch | None = None


class Branch(Contract, frozen=True, kw_only=True):
    tree: Tree
    next: Branch | None = None


class TreeWithoutLabel(Contract, frozen=True, kw_only=True):
    children: list[TreeWithoutLabel] = msgspec.field(default_factory=list)
    parent: Branch2 | None = None


class Branch2(Contract, frozen=True, kw_only=True):
    tree: TreeWithoutLabel
    next: Branch2 | None = None


def test_recursive_types_are_compared_without_looping() -> None:
    """Self- and mutually-recursive Structs compare as compatible with themselves, and terminate."""
    assert compare(schema(Tree), schema(Tree)) == []


def test_recursive_type_reports_a_break_once() -> None:
    """A field removed from a recursive Struct is reported once, at the top-level path."""
    found = compare(schema(Tree), schema(TreeWithoutLabel))
    assert kinds_and_paths(found) == {("field_removed", "$.label")}
    assert len(found) == 1


# The gate over a whole registry and the checked-in files.

gate_v1 = Registry()
gate_both = Registry()


@message(domain="gate", name="widget_made", version=1, kind="evt", registry=gate_v1)
class WidgetMadeV1(Contract, frozen=True, kw_only=True):
    """A widget was made."""

    widget_id: str


@message(domain="gate", name="widget_made", version=1, kind="evt", registry=gate_both)
class WidgetMadeV1Again(Contract, frozen=True, kw_only=True):
    """A widget was made (the same v1, unchanged)."""

    widget_id: str


@message(domain="gate", name="widget_made", version=2, kind="evt", registry=gate_both)
class WidgetMadeV2(Contract, frozen=True, kw_only=True):
    """A widget was made, now with a mandatory size."""

    widget_id: str
    size: int


@message(domain="gate", name="widget_sold", version=1, kind="evt", registry=gate_both)
class WidgetSold(Contract, frozen=True, kw_only=True):
    """A widget was sold."""

    widget_id: str


def test_new_message_and_new_major_version_pass_the_gate(tmp_path: Path) -> None:
    """A new message and a v2 beside an unchanged v1 are only "not yet exported"."""
    write_all(tmp_path, registry=gate_v1)
    findings = check_registry(gate_both, tmp_path / SCHEMAS_DIR)
    assert {(f.schema_path, f.kind) for f in findings} == {
        ("gate/v2/widget_made.json", "not_exported"),
        ("gate/v1/widget_sold.json", "not_exported"),
    }
    assert not any(f.breaking for f in findings)
    assert write_all(tmp_path, registry=gate_both)  # exporting them is allowed
    assert check_all(tmp_path, registry=gate_both) == []


def test_message_removed_from_the_registry_is_breaking(tmp_path: Path) -> None:
    """A checked-in schema whose message is no longer registered fails the gate."""
    write_all(tmp_path, registry=gate_both)
    findings = check_registry(gate_v1, tmp_path / SCHEMAS_DIR)
    assert {(f.schema_path, f.kind) for f in findings if f.breaking} == {
        ("gate/v2/widget_made.json", "message_removed"),
        ("gate/v1/widget_sold.json", "message_removed"),
    }


class WidgetMadeBroken(Contract, frozen=True, kw_only=True):
    """A widget was made, but its id field was renamed."""

    widget_ref: str


def test_export_refuses_to_overwrite_a_schema_with_a_breaking_change(tmp_path: Path) -> None:
    """write_all raises and writes nothing when a message broke; check_all reports it."""
    write_all(tmp_path, registry=gate_v1)
    broken = Registry()
    message(domain="gate", name="widget_made", version=1, kind="evt", registry=broken)(
        WidgetMadeBroken
    )
    published = tmp_path / SCHEMAS_DIR / "gate" / "v1" / "widget_made.json"
    before = published.read_bytes()
    with pytest.raises(BreakingChangeError, match="widget_id") as caught:
        write_all(tmp_path, registry=broken)
    assert [f.kind for f in caught.value.findings] == ["field_removed", "required_field_added"]
    assert published.read_bytes() == before
    problems = check_all(tmp_path, registry=broken)
    assert any("breaking change" in p and "widget_id" in p for p in problems)
    assert any("out of date" in p for p in problems)


def test_export_writes_only_what_changed(tmp_path: Path) -> None:
    """A second export of the same registry changes no file and reports none."""
    first = write_all(tmp_path, registry=gate_both)
    assert {p.relative_to(tmp_path).as_posix() for p in first} == {
        "contracts/schemas/gate/v1/widget_made.json",
        "contracts/schemas/gate/v2/widget_made.json",
        "contracts/schemas/gate/v1/widget_sold.json",
        "docs/asyncapi.yaml",
    }
    assert write_all(tmp_path, registry=gate_both) == []


def test_unreadable_checked_in_schema_fails_the_gate(tmp_path: Path) -> None:
    """A checked-in schema that is not JSON is reported, not crashed on."""
    write_all(tmp_path, registry=gate_v1)
    (tmp_path / SCHEMAS_DIR / "gate" / "v1" / "widget_made.json").write_text("{not json")
    findings = check_registry(gate_v1, tmp_path / SCHEMAS_DIR)
    assert [f.kind for f in findings] == ["unreadable_schema"]
