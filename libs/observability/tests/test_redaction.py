"""The redaction safety net: secret-looking fields never reach a log line."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from aifactory.observability.logging import configure_logging
from aifactory.observability.redaction import REDACTED, is_secret_key


@pytest.mark.parametrize(
    "key",
    [
        "key_material",
        "plaintext",
        "secret",
        "client_secret",
        "password",
        "token",
        "access_token",
        "master_key",
        "masterKey",
        "private_key_pem",
        "api-key",
        "data_key",
    ],
)
def test_secret_looking_keys_are_recognised(key: str) -> None:
    """Keys naming key material, plaintext, passwords, tokens or secrets count as secret."""
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["master_key_id", "key_id", "max_tokens", "tenant", "job_id", "key_version"]
)
def test_identifiers_are_not_mistaken_for_secrets(key: str) -> None:
    """Ids and counts that merely mention a key or tokens are kept."""
    assert not is_secret_key(key)


def test_secret_values_are_redacted_in_output() -> None:
    """Secret values (also nested) print as [redacted]; other fields are kept verbatim."""
    out = io.StringIO()
    configure_logging("keys", json=True, stream=out)
    structlog.get_logger("aifactory.keys").info(
        "data_key_generated",
        key_material="c2VjcmV0LWJ5dGVz",
        master_key_id="mk-1",
        request={"tenant": "acme", "plaintext": "hunter2", "items": [{"password": "pw"}]},
    )
    text = out.getvalue()
    for secret in ("c2VjcmV0LWJ5dGVz", "hunter2", '"pw"'):
        assert secret not in text
    line = json.loads(text)
    assert line["key_material"] == REDACTED
    assert line["master_key_id"] == "mk-1"
    assert line["request"] == {
        "tenant": "acme",
        "plaintext": REDACTED,
        "items": [{"password": REDACTED}],
    }
