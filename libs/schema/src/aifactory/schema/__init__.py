"""JSON Schema and AsyncAPI export of the contracts, and the compatibility gate.

``jsonschema`` turns each registered message into a draft 2020-12 JSON Schema,
``asyncapi`` turns the whole registry into one AsyncAPI 3.0 document, ``compat``
decides whether a new schema breaks a published one, and ``export`` writes and
checks the generated files in the repository (what ``aifactory contracts export``
and ``aifactory contracts check`` run).
"""

from aifactory.schema.asyncapi import asyncapi_document, render_asyncapi
from aifactory.schema.compat import Breaking, Finding, check_registry, compare
from aifactory.schema.export import BreakingChangeError, check_all, generated_files, write_all
from aifactory.schema.jsonschema import message_schema, registry_schemas, render_schema

__all__ = [
    "Breaking",
    "BreakingChangeError",
    "Finding",
    "asyncapi_document",
    "check_all",
    "check_registry",
    "compare",
    "generated_files",
    "message_schema",
    "registry_schemas",
    "render_asyncapi",
    "render_schema",
    "write_all",
]
