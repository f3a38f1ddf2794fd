"""Imports every contract module so the registry is complete.

Import this (``import aifactory.contracts.catalog``) wherever the full list of
messages matters: schema export, the compatibility gate, ``aifactory tail``. A new
domain module is added to ``MODULES`` below.
"""

from __future__ import annotations

import importlib

from aifactory.contracts.registry import REGISTRY, Registry

MODULES: tuple[str, ...] = (
    "aifactory.contracts.dlq",
    "aifactory.contracts.example.v1",
    "aifactory.contracts.keys.v1",
    "aifactory.contracts.health.v1",
    "aifactory.contracts.inventory.v1",
    "aifactory.contracts.jobs.v1",
    "aifactory.contracts.billing.v1",
    "aifactory.contracts.system.v1",
)


def load_all() -> Registry:
    """Import every contract module and return the (now complete) registry."""
    for name in MODULES:
        importlib.import_module(name)
    return REGISTRY
