"""The base class every aifactory message contract derives from.

Contracts are ``msgspec.Struct`` classes: immutable (``frozen``), keyword-only, and
strict about unknown fields so a malformed or mis-addressed payload is rejected with
a clear error instead of being half-read. Evolution rules (see docs/contracts.md):
new fields get defaults; a published field is never renamed, retyped or removed; a
breaking change is a new major version with its own subject, served beside the old.

msgspec applies ``kw_only`` only to the fields a class itself defines, so the
metaclass below makes it the default for every subclass: a contract can then list a
required field after one with a default, and callers must always name fields.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _ContractMeta(msgspec.StructMeta):
    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        **config: Any,
    ) -> _ContractMeta:
        config.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **config)  # type: ignore[no-any-return]


class Contract(
    msgspec.Struct, metaclass=_ContractMeta, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Base for all message payloads: immutable, keyword-only, rejects unknown fields."""
