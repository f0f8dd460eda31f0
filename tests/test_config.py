from __future__ import annotations

import pytest

from relay.config import ConfigError, Settings


def test_defaults_are_the_local_stack() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.ingest_host == "127.0.0.1"
    assert settings.ingest_port == 8080
    assert settings.max_body_bytes == 65536
    assert settings.produce_timeout_s <= 2.0
    assert settings.topic_partitions == 12
    assert settings.app_id is None


def test_environment_is_parsed_by_type() -> None:
    settings = Settings.from_env(
        {
            "RELAY_TOPIC_PREFIX": "clips",
            "RELAY_MAX_BODY_BYTES": "1024",
            "RELAY_PRODUCE_TIMEOUT_S": "0.5",
            "RELAY_REJECT_UNKNOWN_FIELDS": "true",
            "RELAY_APP_ID": "12345",
        }
    )
    assert settings.topic("play") == "clips.play"
    assert settings.max_body_bytes == 1024
    assert settings.produce_timeout_s == 0.5
    assert settings.reject_unknown_fields is True
    assert settings.app_id == 12345


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"RELAY_INGEST_PORT": "9000"}, ingest_port=9100, ingest_host=None)
    assert settings.ingest_port == 9100
    assert settings.ingest_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("RELAY_MAX_BODY_BYTES", "lots"),
        ("RELAY_MAX_BODY_BYTES", "0"),
        ("RELAY_INGEST_MAX_IN_FLIGHT", "-1"),
        ("RELAY_PRODUCE_TIMEOUT_S", "0"),
        ("RELAY_REJECT_UNKNOWN_FIELDS", "maybe"),
        ("RELAY_INGEST_PORT", "70000"),
        ("RELAY_GC_YOUNG_THRESHOLD", "0"),  # would switch automatic collection off
        ("RELAY_FORWARD_WINDOW_S", "inf"),
        ("RELAY_FORWARD_WINDOW_S", "nan"),
        ("RELAY_KAFKA_QUEUED_RECORDS", "4095"),  # below the in-flight bound (4096)
        ("RELAY_FORWARD_FETCH_MIN_BYTES", "0"),
        ("RELAY_FORWARD_FETCH_MIN_BYTES", "262145"),  # over one partition's share
        ("RELAY_FORWARD_FETCH_MAX_WAIT_S", "0"),
        ("RELAY_FORWARD_FETCH_MAX_WAIT_S", "0.0009"),  # 0 ms on the wire: no wait
        ("RELAY_FORWARD_FETCH_MAX_WAIT_S", "30.001"),  # Kafka's request timeout is 40 s
        ("RELAY_FORWARD_FETCH_MAX_WAIT_S", "nan"),
        ("RELAY_UPSTREAM_URL", "api.clips.feed.fm"),  # no scheme
        ("RELAY_UPSTREAM_URL", "https://api.clips.feed.fm/?key=1"),
        ("RELAY_UPSTREAM_URL", "https://api.clips.feed.fm:99999"),
    ],
)
def test_bad_values_name_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        Settings.from_env({env: value})


def test_the_fetch_bounds_hold_at_their_edges() -> None:
    low = Settings.from_env(
        {"RELAY_FORWARD_FETCH_MIN_BYTES": "1", "RELAY_FORWARD_FETCH_MAX_WAIT_S": "0.001"}
    )
    assert (low.forward_fetch_min_bytes, low.forward_fetch_max_wait_s) == (1, 0.001)
    high = Settings.from_env(
        {"RELAY_FORWARD_FETCH_MIN_BYTES": "262144", "RELAY_FORWARD_FETCH_MAX_WAIT_S": "30"}
    )
    assert (high.forward_fetch_min_bytes, high.forward_fetch_max_wait_s) == (262144, 30.0)
    defaults = Settings.from_env({})
    assert defaults.forward_fetch_min_bytes == 65536
    assert defaults.forward_fetch_max_wait_s == 0.05


def test_every_setting_is_described() -> None:
    described = Settings.describe()
    assert len(described) == len(Settings.__dataclass_fields__)
    assert all(env.startswith("RELAY_") and meaning for env, _, meaning in described)
