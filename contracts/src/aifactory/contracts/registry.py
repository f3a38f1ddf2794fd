"""The registry of every message aifactory publishes or accepts.

Each contract class is registered once with ``@message(...)``, which records its
domain, name, major version and kind, and from those derives everything a transport
needs: the NATS subject, the CloudEvents ``type``, the JSON Schema id and a decoder
built once. Subjects follow ``factory.<domain>.v<N>.<kind>.<name>[.<scope>]`` where
the scope token is the tenant (or site, or service for dead letters) so NATS
permissions can give a tenant exactly its own subjects.
"""

from __future__ import annotations

import builtins
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec

from aifactory.contracts.base import Contract
from aifactory.contracts.errors import UndecodableBody, UnknownMessageType

Kind = Literal["evt", "cmd", "qry", "tlm", "audit"]
Scope = Literal["tenant", "site", "service"]

KINDS: tuple[Kind, ...] = ("evt", "cmd", "qry", "tlm", "audit")
CE_TYPE_PREFIX = "io.aifactory"
SCHEMA_ID_PREFIX = "urn:aifactory:schema"

_TOKEN = re.compile(r"^[a-z][a-z0-9_]*$")
_SCOPE_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

C = TypeVar("C", bound=Contract)


class RegistryError(ValueError):
    """A contract was registered with invalid or conflicting metadata."""


@dataclass(frozen=True, eq=False)
class MessageSpec:
    """Everything the transport knows about one registered contract."""

    type: type[Contract]
    domain: str
    name: str
    version: int
    kind: Kind
    scope: Scope | None = None
    # builtins.type: inside this class, a bare ``type`` means the field above, and mypy
    # would read this annotation as plain ``None``.
    reply: builtins.type[Contract] | None = None
    summary: str = ""
    subject_override: str | None = None
    _decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_decoder", msgspec.json.Decoder(self.type))

    @property
    def base_subject(self) -> str:
        """The subject without its scope token (``factory.inventory.v1.evt.node_registered``)."""
        if self.subject_override is not None:
            return self.subject_override
        return f"factory.{self.domain}.v{self.version}.{self.kind}.{self.name}"

    @property
    def subject_pattern(self) -> str:
        """The subject as documented, with the scope as a ``{tenant}``/``{site}`` parameter."""
        return f"{self.base_subject}.{{{self.scope}}}" if self.scope else self.base_subject

    @property
    def subject_filter(self) -> str:
        """A NATS filter matching every scope of this message."""
        return f"{self.base_subject}.*" if self.scope else self.base_subject

    def subject(self, scope_value: str | None = None) -> str:
        """The concrete subject; a scoped message needs its tenant or site id."""
        if self.scope is None:
            if scope_value is not None:
                raise RegistryError(f"{self.ce_type} is not scoped; got scope {scope_value!r}")
            return self.base_subject
        if scope_value is None or not _SCOPE_VALUE.match(scope_value):
            raise RegistryError(
                f"{self.ce_type} needs a {self.scope} scope token matching "
                f"{_SCOPE_VALUE.pattern}; got {scope_value!r}"
            )
        return f"{self.base_subject}.{scope_value}"

    @property
    def ce_type(self) -> str:
        """CloudEvents ``type``, e.g. ``io.aifactory.inventory.node_registered.v1``."""
        return f"{CE_TYPE_PREFIX}.{self.domain}.{self.name}.v{self.version}"

    @property
    def reply_ce_type(self) -> str | None:
        """The ``ce-type`` header of this command's (or query's) successful reply."""
        return f"{self.ce_type}.reply" if self.reply is not None else None

    @property
    def schema_id(self) -> str:
        """JSON Schema ``$id`` and CloudEvents ``dataschema`` of the payload."""
        return f"{SCHEMA_ID_PREFIX}:{self.domain}:v{self.version}:{self.name}"

    @property
    def schema_path(self) -> str:
        """Where the checked-in JSON Schema lives, relative to ``contracts/schemas``."""
        return f"{self.domain}/v{self.version}/{self.name}.json"

    def decode(self, body: bytes | memoryview) -> Contract:
        """Decode a JSON body into this contract or raise ``UndecodableBody``."""
        try:
            return self._decoder.decode(body)  # type: ignore[no-any-return]
        except msgspec.DecodeError as exc:
            raise UndecodableBody(self.ce_type, str(exc)) from exc


class Registry:
    """All registered contracts, looked up by class or by CloudEvents type."""

    def __init__(self) -> None:
        self._by_type: dict[type[Contract], MessageSpec] = {}
        self._by_ce_type: dict[str, MessageSpec] = {}
        self._replies: dict[type[Contract], str] = {}

    def add(self, spec: MessageSpec) -> None:
        """Register ``spec``; refuse duplicates and malformed names."""
        if not _TOKEN.match(spec.domain) or not _TOKEN.match(spec.name):
            raise RegistryError(
                f"domain and name must match {_TOKEN.pattern}: {spec.domain!r}, {spec.name!r}"
            )
        if spec.version < 1:
            raise RegistryError(f"major version must be >= 1, got {spec.version}")
        if spec.kind not in KINDS:
            raise RegistryError(f"kind must be one of {KINDS}, got {spec.kind!r}")
        if spec.kind in ("cmd", "qry") and spec.reply is None:
            raise RegistryError(f"{spec.ce_type}: commands and queries need a reply type")
        if not spec.type.__struct_config__.frozen or any(
            p.kind is not inspect.Parameter.KEYWORD_ONLY
            for p in inspect.signature(spec.type).parameters.values()
        ):
            raise RegistryError(
                f"{spec.type.__name__} must be declared "
                "`class ...(Contract, frozen=True, kw_only=True)`"
            )
        if spec.type in self._by_type:
            raise RegistryError(f"{spec.type.__name__} is already registered")
        if spec.ce_type in self._by_ce_type:
            raise RegistryError(f"{spec.ce_type} is already registered")
        self._by_type[spec.type] = spec
        self._by_ce_type[spec.ce_type] = spec

    def spec_for(self, cls: type[Contract]) -> MessageSpec:
        """The spec of a registered contract class."""
        try:
            return self._by_type[cls]
        except KeyError:
            raise RegistryError(f"{cls.__name__} is not a registered message") from None

    def by_ce_type(self, ce_type: str) -> MessageSpec:
        """The spec whose CloudEvents type is ``ce_type``, or ``UnknownMessageType``."""
        try:
            return self._by_ce_type[ce_type]
        except KeyError:
            raise UnknownMessageType(ce_type) from None

    def __iter__(self) -> Iterator[MessageSpec]:
        return iter(sorted(self._by_ce_type.values(), key=lambda s: s.ce_type))

    def __len__(self) -> int:
        return len(self._by_ce_type)

    def __contains__(self, item: object) -> bool:
        return item in self._by_type or item in self._by_ce_type


REGISTRY = Registry()


def message(
    *,
    domain: str,
    name: str,
    version: int,
    kind: Kind,
    scope: Scope | None = None,
    reply: type[Contract] | None = None,
    summary: str = "",
    subject: str | None = None,
    registry: Registry | None = None,
) -> Callable[[type[C]], type[C]]:
    """Class decorator registering a contract. ``summary`` defaults to its docstring."""

    def register(cls: type[C]) -> type[C]:
        doc = (cls.__doc__ or "").strip().splitlines()
        (registry if registry is not None else REGISTRY).add(
            MessageSpec(
                type=cls,
                domain=domain,
                name=name,
                version=version,
                kind=kind,
                scope=scope,
                reply=reply,
                summary=summary or (doc[0] if doc else ""),
                subject_override=subject,
            )
        )
        return cls

    return register


def spec_of(obj: Contract | type[Contract]) -> MessageSpec:
    """The registry entry of a contract instance or class."""
    cls = obj if isinstance(obj, type) else type(obj)
    return REGISTRY.spec_for(cls)
