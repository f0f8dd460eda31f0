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


INLINE_KEYS = """# Tenants of the relay, kept by hand: these comments must survive add-key.
[tenants.acme]
upstream_token = "acme-token"  # the Clips Studio token
upstream_secret = "acme-secret"
keys = [
    { id = "ios", sha256 = "{acme}" },  # the iOS app
]

# globex has no keys yet
[tenants.globex]
upstream_token = "globex-token"
upstream_secret = "globex-secret"
"""


def assert_kept(before: str, after: str) -> None:
    """Every line of ``before`` is in ``after``, unchanged and in order: lines were
    only added (the new key), none rewritten, moved or dropped."""
    remaining = iter(after.splitlines())
    for line in before.splitlines():
        assert any(line == other for other in remaining), f"lost or changed: {line!r}\n{after}"


def add_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """Run ``relay tenants add-key`` in this process: (exit code, stdout, stderr)."""
    from relay.cli import main

    monkeypatch.delenv("RELAY_TENANTS_FILE", raising=False)
    code = main(["tenants", "add-key", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_key_without_a_file_says_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # "." is a directory: it once was taken for the file
    code, out, err = add_key(capsys, monkeypatch, "--tenant", "acme", "--id", "ios")
    assert code == 2
    assert out == ""
    assert "RELAY_TENANTS_FILE" in err
    assert "--file" in err
    assert "Traceback" not in err


def test_add_key_without_a_file_gives_no_traceback_as_a_command(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "RELAY_TENANTS_FILE"}
    finished = subprocess.run(
        [sys.executable, "-m", "relay", "tenants", "add-key", "--tenant", "acme", "--id", "ios"],
        cwd=tmp_path,
        env={**environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stderr
    assert "RELAY_TENANTS_FILE" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_add_key_appends_to_an_inline_array_and_keeps_the_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tenants.toml"
    old = new_key()
    before = INLINE_KEYS.replace("{acme}", hash_key(old))
    path.write_text(before)
    code, out, err = add_key(
        capsys, monkeypatch, "--tenant", "acme", "--id", "android", "--file", str(path)
    )
    assert code == 0, err
    key = out.splitlines()[-1]
    assert key.startswith("rk_")
    after = path.read_text()
    assert_kept(before, after)
    assert "# the iOS app" in after
    assert key not in after
    tenants = load_tenants(Settings(tenants_file=str(path)), {})
    assert [k.id for k in tenants.by_name["acme"].keys] == ["ios", "android"]
    assert tenants.authenticate(key)[0].name == "acme"  # type: ignore[index]
    assert tenants.authenticate(old)[0].name == "acme"  # type: ignore[index]
    assert tenants.by_name["globex"].upstream_secret == "globex-secret"


def test_add_key_to_a_tenant_of_key_tables_and_to_one_without_keys(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tenants_file: Path,
    keys: dict[str, str],
) -> None:
    before = tenants_file.read_text()
    code, out, err = add_key(
        capsys, monkeypatch, "--tenant", "acme", "--id", "web", "--file", str(tenants_file)
    )
    assert code == 0, err
    acme_key = out.splitlines()[-1]
    assert_kept(before, tenants_file.read_text())
    tenants = load_tenants(Settings(tenants_file=str(tenants_file)), {"ACME_SECRET": "x"})
    assert [k.id for k in tenants.by_name["acme"].keys] == ["ios", "old", "web"]
    assert tenants.authenticate(acme_key)[0].name == "acme"  # type: ignore[index]
    assert tenants.authenticate(keys["globex"])[0].name == "globex"  # type: ignore[index]
    assert tenants.authenticate(keys["old"]) is None  # still revoked

    path = tenants_file.parent / "no-keys.toml"
    path.write_text('[tenants.solo]\nupstream_token = "t"\nupstream_secret = "s"\n')
    code, out, err = add_key(
        capsys, monkeypatch, "--tenant", "solo", "--id", "a", "--file", str(path)
    )
    assert code == 0, err
    tenants = load_tenants(Settings(tenants_file=str(path)), {})
    assert tenants.authenticate(out.splitlines()[-1])[0].name == "solo"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "tenants.toml"),
        ('[tenants.acme]\nupstream_token = "t"\nkeys = "not a list"\n', "keys"),
    ],
)
def test_add_key_to_a_file_it_cannot_edit_names_the_problem(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    text: str,
    message: str,
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    code, out, err = add_key(
        capsys, monkeypatch, "--tenant", "acme", "--id", "k", "--file", str(path)
    )
    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err
    assert path.read_text() == text  # untouched


_BROWSER_TENANT = """
[tenants.web]
upstream_token = "a"
upstream_secret = "b"
{extra}
[[tenants.web.keys]]
id = "page"
sha256 = "{digest}"
browser = {browser}
"""


def test_browser_keys_and_origins_load(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        _BROWSER_TENANT.format(
            extra='allowed_origins = ["https://App.example:443", "http://127.0.0.1:3000"]\n'
            "browser_inbound_rps = 20",
            digest="a" * 64,
            browser="true",
        )
    )
    tenant = load_tenants(Settings(tenants_file=str(path)), {}).by_name["web"]
    assert tenant.allowed_origins == {"https://app.example", "http://127.0.0.1:3000"}
    assert (tenant.browser_inbound_rps, tenant.browser_inbound_burst) == (20, 40)
    assert [key.browser for key in tenant.keys] == [True]


@pytest.mark.parametrize(
    ("extra", "browser", "message"),
    [
        ('allowed_origins = ["https://app.example/"]', "false", "allowed_origins: .*no path"),
        ('allowed_origins = ["*"]', "false", "allowed_origins: .*wildcards"),
        ('allowed_origins = "https://app.example"', "false", "list of strings"),
        ("browser_inbound_rps = 5", "true", "needs allowed_origins"),
        ('allowed_origins = ["https://app.example"]', "true", "needs browser_inbound_rps"),
        (
            'allowed_origins = ["https://app.example"]\nbrowser_inbound_rps = 5',
            '"yes"',
            "browser is true or false",
        ),
    ],
)
def test_bad_browser_settings_say_what_is_wrong(
    tmp_path: Path, extra: str, browser: str, message: str
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(_BROWSER_TENANT.format(extra=extra, digest="a" * 64, browser=browser))
    with pytest.raises(ConfigError, match=message):
        load_tenants(Settings(tenants_file=str(path)), {})
