"""The health service's tables: expected nodes with their verdicts, alerts, silences.

``health_nodes`` holds one row per node inventory told us about, with the verdict
last published (so a restart resumes without re-announcing anything);
``health_alerts`` is the alert history (open and resolved, queryable);
``health_silences`` the silences with their expiry, reason and author. Lists are
stored as JSON text so both SQLite and PostgreSQL read them the same way.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel


class HealthNodeRow(SQLModel, table=True):
    """A node the health service expects, and its published verdict."""

    __tablename__ = "health_nodes"

    node_id: str = Field(primary_key=True, max_length=63)
    site_id: str = Field(max_length=32)
    rack_id: str = Field(default="", max_length=63)
    accelerators: int | None = None
    admin_state: str = Field(default="available", max_length=32)
    verdict: str = Field(default="healthy", max_length=16, index=True)
    recommended_action: str = Field(default="none", max_length=16)
    reasons_json: str = "[]"
    first_seen: dt.datetime | None = None
    observed_at: dt.datetime | None = None
    interval_s: float | None = None
    """The node's last known reporting interval (for the grace after a restart)."""
    updated_at: dt.datetime


class HealthAlertRow(SQLModel, table=True):
    """One alert, open or resolved (the alert history)."""

    __tablename__ = "health_alerts"

    alert_id: str = Field(primary_key=True, max_length=64)
    node_id: str = Field(index=True, max_length=63)
    site_id: str = Field(max_length=32)
    rack_id: str = Field(default="", max_length=63)
    rule: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    summary: str = Field(default="", max_length=512)
    component: str = Field(default="", max_length=256)
    state: str = Field(default="open", max_length=16, index=True)
    announced: bool = False
    occurrences: int = 1
    first_seen: dt.datetime
    raised_at: dt.datetime = Field(index=True)
    resolved_at: dt.datetime | None = None


class HealthSilenceRow(SQLModel, table=True):
    """A silence of a node's alerts (all, or one rule) until ``ends_at``."""

    __tablename__ = "health_silences"

    silence_id: str = Field(primary_key=True, max_length=64)
    node_id: str = Field(index=True, max_length=63)
    rule: str | None = Field(default=None, max_length=64)
    reason: str = Field(max_length=512)
    actor: str = Field(max_length=128)
    starts_at: dt.datetime
    ends_at: dt.datetime = Field(index=True)
    lifted_at: dt.datetime | None = None
