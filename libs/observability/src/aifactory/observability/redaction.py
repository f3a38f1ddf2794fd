"""A structlog processor that blanks values whose keys look like secrets.

It is a safety net for the rule that no key material, plaintext or credential is
ever logged: services should not pass such values to a logger in the first place,
but if one does (``log.info("key_created", key_material=...)``) the line carries
``"[redacted]"`` instead. Keys are compared by their words (``snake_case``,
``kebab-case`` and ``camelCase`` are split), so ``access_token`` and ``masterKey`` are
redacted while ``max_tokens`` and ``master_key_id`` are not. Nested dictionaries (and
lists of them) are searched a few levels deep.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

REDACTED = "[redacted]"

SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "token",
        "plaintext",
        "credential",
        "credentials",
        "authorization",
        "seed",
        "dek",
    }
)
"""A key containing one of these words is a secret (``client_secret``, ``api_token``)."""

SECRET_PHRASES = (
    ("key", "material"),
    ("private", "key"),
)
"""A key containing one of these word sequences anywhere is a secret (``key_material_b64``)."""

SECRET_ENDINGS = (
    ("master", "key"),
    ("api", "key"),
    ("secret", "key"),
    ("data", "key"),
    ("signing", "key"),
    ("encryption", "key"),
)
"""A key ending in one of these is a secret (``master_key``); ``master_key_id`` is not."""

_NEVER_REDACTED = frozenset({"event", "level", "logger", "timestamp", "service"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
_MAX_DEPTH = 4


def _words(key: str) -> tuple[str, ...]:
    return tuple(w for w in _SEPARATORS.split(_CAMEL.sub("_", key).lower()) if w)


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` probably holds a secret and must not be logged."""
    words = _words(key)
    if any(word in SECRET_WORDS for word in words):
        return True
    if any(_contains(words, phrase) for phrase in SECRET_PHRASES):
        return True
    return any(words[-len(ending) :] == ending for ending in SECRET_ENDINGS)


def _redact_value(value: Any, depth: int) -> Any:
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple) and any(
        isinstance(item, Mapping | list | tuple) for item in value
    ):
        return [_redact_value(item, depth + 1) for item in value]
    return value


def redact_secrets(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace the values of secret-looking keys with ``[redacted]``."""
    for key, value in event_dict.items():
        if key in _NEVER_REDACTED or key.startswith("_"):
            continue
        if is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = _redact_value(value, 0)
    return event_dict
