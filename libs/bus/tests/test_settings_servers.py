"""``AIFACTORY_NATS_URL`` as one server or a cluster's list, and stream replica settings."""

from __future__ import annotations

import pytest

from aifactory.bus.settings import BusSettings, SettingsError, parse_servers, redact_url


def test_a_comma_separated_url_lists_every_server() -> None:
    """A cluster's servers, comma-separated (spaces allowed), become the client's server list."""
    settings = BusSettings.from_env(
        {"AIFACTORY_NATS_URL": "nats://nats-1:4222, nats://nats-2:4222 ,tls://nats-3:4443"}
    )
    assert settings.servers == ["nats://nats-1:4222", "nats://nats-2:4222", "tls://nats-3:4443"]
    assert settings.nats_url == "nats://nats-1:4222,nats://nats-2:4222,tls://nats-3:4443"


def test_one_url_is_a_list_of_one_and_the_default_is_loopback() -> None:
    """A single URL, a bare host:port and no setting at all each give one server."""
    assert BusSettings.from_env({"NATS_URL": "nats://10.0.0.5:4222"}).servers == [
        "nats://10.0.0.5:4222"
    ]
    assert parse_servers("10.0.0.5:4222") == ("nats://10.0.0.5:4222",)
    assert BusSettings.from_env({}).servers == ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("nats://a:4222,,nats://b:4222", "empty entry"),
        ("http://a:8222", "must look like nats://host:port"),
        ("nats://a:99999", "is not a URL"),
        ("nats://:4222", "must look like nats://host:port"),
    ],
)
def test_a_bad_server_entry_is_refused_with_the_reason(url: str, complaint: str) -> None:
    """A malformed entry in AIFACTORY_NATS_URL fails at start-up, naming the problem."""
    with pytest.raises(SettingsError, match=complaint):
        BusSettings.from_env({"AIFACTORY_NATS_URL": url})


@pytest.mark.parametrize("replicas", ["0", "2.5", "6", "three"])
def test_stream_replicas_must_be_a_whole_number_jetstream_allows(replicas: str) -> None:
    """AIFACTORY_STREAM_REPLICAS outside 1..5, or not whole, is refused."""
    with pytest.raises(SettingsError, match="AIFACTORY_STREAM_REPLICAS"):
        BusSettings.from_env({"AIFACTORY_STREAM_REPLICAS": replicas})


def test_stream_replicas_three_for_a_cluster() -> None:
    """AIFACTORY_STREAM_REPLICAS=3 reaches the settings the topology is built from."""
    assert BusSettings.from_env({"AIFACTORY_STREAM_REPLICAS": "3"}).stream_replicas == 3


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://svc:s3cret@n1:4222", "nats://***@n1:4222"),
        (
            "nats://a:b@n1:4222,nats://n2:4222,tls://tok@n3",
            "nats://***@n1:4222,nats://n2:4222,tls://***@n3",
        ),
        ("user:pw@host:4222", "***@host:4222"),
    ],
)
def test_logged_urls_carry_no_credentials(url: str, shown: str) -> None:
    """``display_url`` (what logs and messages show) replaces user and password with ***."""
    assert BusSettings(nats_url=url).display_url == shown
    assert redact_url(url) == shown
