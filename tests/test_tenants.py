from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, Settings
from relay.tenants import append_key, hash_key, load_tenants, new_key

FILE = """
[tenants.acme]
upstream_token = "acme-token"
upstream_secret_env = "ACME_SECRET"
app_id = 12345
inbound_rps = 5
upstream_budget_rps = 300

[[tenants.acme.keys]]
id = "ios"
sha256 = "{acme}"

[[tenants.acme.keys]]
id = "old"
sha256 = "{old}"
revoked = true

[tenants.globex]
upstream_token = "globex-token"
upstream_secret = "globex-secret"

[[tenants.globex.keys]]
id = "web"
sha256 = "{globex}"
"""


@pytest.fixture
def keys() -> dict[str, str]:
    return {"acme": new_key(), "old": new_key(), "globex": new_key()}


@pytest.fixture
def tenants_file(tmp_path: Path, keys: dict[str, str]) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(FILE.format(**{name: hash_key(key) for name, key in keys.items()}))
    return path


def test_a_file_of_tenants_loads(tenants_file: Path, keys: dict[str, str]) -> None:
    tenants = load_tenants(Settings(tenants_file=str(tenants_file)), {"ACME_SECRET": "s3cret"})
    acme = tenants.by_name["acme"]
    assert (acme.upstream_token, acme.upstream_secret, acme.app_id) == (
        "acme-token",
        "s3cret",
        12345,
    )
    assert (acme.inbound_rps, acme.inbound_burst, acme.upstream_budget_rps) == (5, 10, 300)
    assert not tenants.open
    found = tenants.authenticate(keys["acme"])
    assert found is not None
    assert found[0].name == "acme"
    assert found[1].id == "ios"
    assert tenants.authenticate(keys["globex"])[0].name == "globex"  # type: ignore[index]


def test_revoked_and_unknown_keys_are_refused(tenants_file: Path, keys: dict[str, str]) -> None:
    tenants = load_tenants(Settings(tenants_file=str(tenants_file)), {"ACME_SECRET": "x"})
    assert tenants.authenticate(keys["old"]) is None
    assert tenants.authenticate(new_key()) is None
    assert tenants.authenticate("") is None


def test_no_file_means_one_open_tenant() -> None:
    tenants = load_tenants(Settings(tenant="dev", app_id=7))
    assert tenants.open
    assert list(tenants.by_name) == ["dev"]
    assert tenants.by_name["dev"].app_id == 7


def test_topics_are_per_tenant_with_a_file(tenants_file: Path) -> None:
    settings = Settings(tenants_file=str(tenants_file), topic_prefix="p")
    tenants = load_tenants(settings, {"ACME_SECRET": "x"})
    assert tenants.topic(settings, "acme", "play") == "p.acme.play"
    assert len(tenants.topics(settings)) == 14
    open_tenants = load_tenants(Settings(topic_prefix="p"))
    assert open_tenants.topic(Settings(topic_prefix="p"), "default", "play") == "p.play"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no \\[tenants"),
        ("[tenants.acme]\nupstream_token = 'a'\n", "upstream_secret"),
        ("[tenants.acme]\nupstream_token = 'a'\nupstream_secret_env = 'NOPE'\n", "NOPE"),
        ("[tenants.Bad]\nupstream_token = 'a'\nupstream_secret = 'b'\n", "tenant name"),
        (
            "[tenants.a]\nupstream_token='a'\nupstream_secret='b'\n[[tenants.a.keys]]\nsha256='xyz'\n",
            "sha256",
        ),
        ("not toml [", "RELAY_TENANTS_FILE"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_tenants(Settings(tenants_file=str(path)), {})


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ConfigError, match="/no/such/file"):
        load_tenants(Settings(tenants_file="/no/such/file"), {})


def test_append_key_stores_only_the_hash(tenants_file: Path) -> None:
    key = append_key(tenants_file, "globex", "android")
    assert key not in tenants_file.read_text()
    assert hash_key(key) in tenants_file.read_text()
    tenants = load_tenants(Settings(tenants_file=str(tenants_file)), {"ACME_SECRET": "x"})
    assert tenants.authenticate(key)[0].name == "globex"  # type: ignore[index]
    with pytest.raises(ConfigError, match="no tenant"):
        append_key(tenants_file, "initech", "k")
