"""The AsyncAPI 3.0 document of the whole bus, for integrators in any language.

Built from the registry: one channel per message (``address`` is the subject
pattern, with ``{tenant}``/``{site}``/``{service}`` parameters), one message per
contract with its payload schema (``components/schemas``, from msgspec) and the
CloudEvents binary-mode headers, and one operation per message from the factory's
point of view: ``send`` for what it publishes (events, telemetry, audit records,
dead letters), ``receive`` for commands and queries, whose ``reply`` names the typed
reply and the shared ``ErrorReply`` (the reply's ``ce-type`` header says which one
came back). The YAML keeps insertion order (``sort_keys=False``), and that order is
fixed: messages in registry order (sorted by CloudEvents type), schemas by name.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from aifactory.contracts import cloudevents as ce
from aifactory.contracts.base import Contract
from aifactory.contracts.registry import CE_TYPE_PREFIX, MessageSpec, Registry
from aifactory.contracts.replies import ERROR_REPLY_TYPE, ErrorReply

ASYNCAPI_VERSION = "3.0.0"
API_TITLE = "aifactory"
API_VERSION = "0.1.0"
"""Version of the bus API as a whole; each message also carries its own major version."""

SERVER_HOST = "localhost:4222"
HEADERS_SCHEMA = "CloudEventHeaders"
REPLY_HEADERS_SCHEMA = "ReplyHeaders"
ERROR_MESSAGE = "error.v1"
SCHEMAS_REF = "#/components/schemas/"
MESSAGES_REF = "#/components/messages/"

_SEND_KINDS = frozenset({"evt", "tlm", "audit"})
_SCOPE_PARAMETERS: dict[str, str] = {
    "tenant": "The owning tenant's id: NATS permissions give a tenant exactly its own subjects.",
    "site": "The site (data center) id the message concerns.",
    "service": "The name of the service that dead-lettered the message.",
}
_SCOPE_VALUE_RULE = "Any token matching ^[A-Za-z0-9_-]{1,64}$."


def message_key(spec: MessageSpec) -> str:
    """The id of a message's channel, operation and message: ``<domain>.<name>.v<N>``."""
    return spec.ce_type.removeprefix(CE_TYPE_PREFIX + ".")


def asyncapi_document(registry: Registry) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every message in ``registry``."""
    specs = list(registry)
    schemas, names = _payload_schemas(specs)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in specs:
        key = message_key(spec)
        messages[key] = _message(spec.type, spec.ce_type, spec.summary, names[spec.type], spec=spec)
        channels[key] = _channel(spec, key)
        operations[key] = _operation(spec, key)
        if spec.reply is not None and spec.reply_ce_type is not None:
            reply_key = f"{key}.reply"
            messages[reply_key] = _message(
                spec.reply,
                spec.reply_ce_type,
                f"The reply to {spec.type.__name__}.",
                names[spec.reply],
            )
            channels[reply_key] = {
                "address": None,
                "title": f"Reply to {spec.type.__name__}",
                "description": (
                    "The requester's inbox (the NATS reply subject of the request). The reply's "
                    f"ce-type header is {spec.reply_ce_type} for {spec.reply.__name__} or "
                    f"{ERROR_REPLY_TYPE} for ErrorReply."
                ),
                "messages": {
                    reply_key: {"$ref": MESSAGES_REF + reply_key},
                    ERROR_MESSAGE: {"$ref": MESSAGES_REF + ERROR_MESSAGE},
                },
            }
    if any(spec.reply is not None for spec in specs):
        messages[ERROR_MESSAGE] = _message(
            ErrorReply, ERROR_REPLY_TYPE, "Why a command or query failed.", names[ErrorReply]
        )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": API_TITLE,
            "version": API_VERSION,
            "description": (
                "The aifactory message bus: CloudEvents 1.0 in NATS binary content mode, "
                "subjects factory.<domain>.v<N>.<kind>.<name>[.<scope>]. Events are on "
                "JetStream; commands and queries are core NATS request/reply. "
                "See docs/contracts.md."
            ),
        },
        "defaultContentType": ce.CONTENT_TYPE,
        "servers": {
            "local": {
                "host": SERVER_HOST,
                "protocol": "nats",
                "description": "A local NATS server with JetStream (aifactory up).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                scope: {"description": f"{text} {_SCOPE_VALUE_RULE}"}
                for scope, text in _SCOPE_PARAMETERS.items()
            },
            "messages": messages,
            "schemas": {
                HEADERS_SCHEMA: _headers_schema(),
                REPLY_HEADERS_SCHEMA: _reply_headers_schema(),
                **schemas,
            },
        },
    }


def render_asyncapi(registry: Registry) -> str:
    """The AsyncAPI document as YAML, in its fixed order."""
    return yaml.safe_dump(
        asyncapi_document(registry),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def _payload_schemas(specs: list[MessageSpec]) -> tuple[dict[str, Any], dict[type, str]]:
    """The ``components/schemas`` of every payload, and each contract's name there."""
    types: list[type[Contract]] = []
    for spec in specs:
        types.append(spec.type)
        if spec.reply is not None:
            types += [spec.reply, ErrorReply]
    if not types:
        return {}, {}
    roots, components = msgspec.json.schema_components(types, ref_template=SCHEMAS_REF + "{name}")
    for reserved in (HEADERS_SCHEMA, REPLY_HEADERS_SCHEMA):
        if reserved in components:
            raise ValueError(f"a contract may not be called {reserved}: the name is reserved")
    names = {
        cls: str(root["$ref"]).removeprefix(SCHEMAS_REF)
        for cls, root in zip(types, roots, strict=True)
    }
    return dict(sorted(components.items())), names


def _message(
    cls: type[Contract],
    ce_type: str,
    summary: str,
    payload: str,
    *,
    spec: MessageSpec | None = None,
) -> dict[str, Any]:
    """A message object; without ``spec`` it is a reply, whose headers are ``ReplyHeaders``."""
    headers = HEADERS_SCHEMA if spec is not None else REPLY_HEADERS_SCHEMA
    pinned: dict[str, Any] = {ce.H_TYPE: {"const": ce_type}}
    if spec is not None:
        pinned[ce.H_DATASCHEMA] = {"const": spec.schema_id}
    message: dict[str, Any] = {
        "name": cls.__name__,
        "title": cls.__name__,
        "summary": summary,
        "contentType": ce.CONTENT_TYPE,
        "headers": {
            "allOf": [
                {"$ref": SCHEMAS_REF + headers},
                {"type": "object", "properties": pinned},
            ]
        },
        "payload": {"$ref": SCHEMAS_REF + payload},
    }
    if spec is not None:
        message["x-aifactory"] = {
            "ce_type": spec.ce_type,
            "kind": spec.kind,
            "version": spec.version,
            "schema": f"contracts/schemas/{spec.schema_path}",
        }
    return message


def _channel(spec: MessageSpec, key: str) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": spec.subject_pattern,
        "title": spec.type.__name__,
        "summary": spec.summary,
        "messages": {key: {"$ref": MESSAGES_REF + key}},
    }
    if spec.scope is not None:
        channel["parameters"] = {spec.scope: {"$ref": f"#/components/parameters/{spec.scope}"}}
    return channel


def _operation(spec: MessageSpec, key: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": "send" if spec.kind in _SEND_KINDS else "receive",
        "channel": {"$ref": f"#/channels/{key}"},
        "summary": spec.summary,
        "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
    }
    if spec.reply is not None:
        reply_key = f"{key}.reply"
        operation["description"] = (
            f"Request/reply on core NATS. The reply is {spec.reply.__name__} "
            f"(ce-type {spec.reply_ce_type}) or, when the request fails, ErrorReply "
            f"(ce-type {ERROR_REPLY_TYPE})."
        )
        operation["reply"] = {
            "channel": {"$ref": f"#/channels/{reply_key}"},
            "messages": [
                {"$ref": f"#/channels/{reply_key}/messages/{reply_key}"},
                {"$ref": f"#/channels/{reply_key}/messages/{ERROR_MESSAGE}"},
            ],
        }
    return operation


def _headers_schema() -> dict[str, Any]:
    def text(description: str, **extra: Any) -> dict[str, Any]:
        return {"type": "string", "description": description, **extra}

    return {
        "type": "object",
        "description": (
            "CloudEvents 1.0 attributes in the NATS binding's binary content mode; "
            "the body is the JSON payload."
        ),
        "required": [ce.H_SPECVERSION, ce.H_ID, ce.H_SOURCE, ce.H_TYPE],
        "properties": {
            ce.H_SPECVERSION: text("CloudEvents spec version.", const=ce.SPECVERSION),
            ce.H_ID: text("Unique event id (a UUID); also sent as Nats-Msg-Id."),
            ce.H_SOURCE: text("The producer, e.g. the service name."),
            ce.H_TYPE: text("The message type, e.g. io.aifactory.<domain>.<name>.v<N>."),
            ce.H_TIME: text("When it happened, RFC 3339 in UTC.", format="date-time"),
            ce.H_SUBJECT: text("What the event is about (e.g. a node id); not the NATS subject."),
            ce.H_DATASCHEMA: text("The payload's JSON Schema $id (urn:aifactory:schema:...)."),
            ce.H_TENANT: text("Extension: the owning tenant, when there is one."),
            ce.H_TRACEPARENT: text(
                "Extension: W3C Trace Context traceparent.",
                pattern="^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            ),
            ce.H_W3C_TRACEPARENT: text("The same traceparent, for W3C propagators."),
            ce.H_CONTENT_TYPE: text("Payload media type.", const=ce.CONTENT_TYPE),
            ce.H_NATS_MSG_ID: text("Equal to ce-id: JetStream drops a re-publication."),
        },
    }


def _reply_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "Headers of a reply to a command or query: ce-type says whether the body is the "
            "typed reply or an ErrorReply."
        ),
        "required": [ce.H_TYPE],
        "properties": {
            ce.H_TYPE: {
                "type": "string",
                "description": f"<request ce-type>.reply, or {ERROR_REPLY_TYPE} for ErrorReply.",
            },
            ce.H_CONTENT_TYPE: {
                "type": "string",
                "description": "Payload media type.",
                "const": ce.CONTENT_TYPE,
            },
        },
    }
