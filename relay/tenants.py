"""Tenants: the apps the relay fronts, each with its own inbound keys, upstream
credentials, appId, inbound rate limit and upstream budget.

Read from a TOML file (``RELAY_TENANTS_FILE``; example in deploy/tenants.example.toml):

    [tenants.acme]
    upstream_token_env = "ACME_UPSTREAM_TOKEN"   # or upstream_token = "..."
    upstream_secret_env = "ACME_UPSTREAM_SECRET" # or upstream_secret = "..."
    app_id = 12345              # optional: else learned from the upstream
    inbound_rps = 100           # per key; burst inbound_burst (default 2 x rps)
    upstream_budget_rps = 200   # all workers together
    allowed_origins = ["https://app.example"]  # web pages that may call (CORS)
    browser_inbound_rps = 50    # per browser key; burst browser_inbound_burst (2 x rps)

    [[tenants.acme.keys]]
    id = "ios-2026"
    sha256 = "9f86d0..."        # of the key; the key itself is never stored
    revoked = false
    browser = false             # true: a key for web pages (see below)

A key marked ``browser`` is public (it ships in a web page): it is accepted only
with an ``Origin`` from the tenant's ``allowed_origins``, may also come in the
query (``?relay_key=``, for ``navigator.sendBeacon``), and is held to
``browser_inbound_rps`` instead of ``inbound_rps``; a tenant with such a key must
set both.

Keys are random 256-bit tokens, so a plain SHA-256 is as good as a slow hash here:
there is nothing to guess. Without a tenants file the relay runs one open tenant
from the RELAY_TENANT / RELAY_UPSTREAM_* settings, for local development.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Array, InlineTable, Table

from relay.config import ConfigError, Settings
from relay.origins import origin

__all__ = [
    "KEY_PREFIX",
    "InboundKey",
    "Tenant",
    "Tenants",
    "append_key",
    "hash_key",
    "load_tenants",
    "new_key",
    "tenant_names",
]

KEY_PREFIX = "rk_"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class InboundKey:
    id: str
    sha256: str
    revoked: bool = False
    browser: bool = False  # public, in web pages: allowed origins only, browser limit


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    upstream_token: str
    upstream_secret: str
    keys: tuple[InboundKey, ...] = ()
    app_id: int | None = None
    inbound_rps: float = 0.0  # 0: no inbound limit
    inbound_burst: float = 0.0
    upstream_budget_rps: float = 200.0
    allowed_origins: frozenset[str] = frozenset()  # as browsers send Origin (relay.origins)
    browser_inbound_rps: float = 0.0  # per browser key; required with one
    browser_inbound_burst: float = 0.0


@dataclass(frozen=True, slots=True)
class Tenants:
    by_name: Mapping[str, Tenant]
    open: bool  # no tenants file: one tenant, no inbound keys (development only)
    _by_hash: Mapping[str, tuple[Tenant, InboundKey]]

    def topic(self, settings: Settings, tenant: str, event_type_name: str) -> str:
        return settings.topic(event_type_name, None if self.open else tenant)

    def topics(self, settings: Settings) -> list[str]:
        """Every event topic of every tenant."""
        from relay.events import EVENT_TYPES

        return [
            self.topic(settings, tenant, event_type.name)
            for tenant in self.by_name
            for event_type in EVENT_TYPES
        ]

    def authenticate(self, key: str) -> tuple[Tenant, InboundKey] | None:
        """The tenant of a presented key; None for unknown or revoked keys.

        The presented key is hashed, then compared with the stored hash in constant
        time; a dict lookup by hash reveals nothing about the key itself."""
        digest = hash_key(key)
        found = self._by_hash.get(digest)
        if found is None or not hmac.compare_digest(found[1].sha256, digest):
            return None
        return None if found[1].revoked else found


def _secret(entry: Mapping[str, Any], name: str, tenant: str, environ: Mapping[str, str]) -> str:
    if f"{name}_env" in entry:
        variable = str(entry[f"{name}_env"])
        value = environ.get(variable)
        if not value:
            raise ConfigError(
                f"tenant {tenant}: environment variable {variable} ({name}) is not set"
            )
        return value
    if name in entry:
        return str(entry[name])
    raise ConfigError(f"tenant {tenant}: give {name} or {name}_env")


def _tenant(name: str, entry: Mapping[str, Any], environ: Mapping[str, str]) -> Tenant:
    if not _NAME.match(name):
        raise ConfigError(f"tenant name {name!r}: use lowercase letters, digits, - and _")
    keys = []
    for key in entry.get("keys", []):
        digest = str(key.get("sha256", "")).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"tenant {name}: key {key.get('id')!r} needs a 64-hex sha256")
        keys.append(
            InboundKey(
                str(key.get("id", digest[:8])),
                digest,
                bool(key.get("revoked")),
                browser=key.get("browser", False) is True,
            )
        )
    origins = _origins(name, entry.get("allowed_origins", []))
    try:
        rps = float(entry.get("inbound_rps", 0))
        browser_rps = float(entry.get("browser_inbound_rps", 0))
        app_id = entry.get("app_id")
        tenant = Tenant(
            name=name,
            upstream_token=_secret(entry, "upstream_token", name, environ),
            upstream_secret=_secret(entry, "upstream_secret", name, environ),
            keys=tuple(keys),
            app_id=int(app_id) if app_id is not None else None,
            inbound_rps=rps,
            inbound_burst=float(entry.get("inbound_burst", 2 * rps)),
            upstream_budget_rps=float(entry.get("upstream_budget_rps", 200)),
            allowed_origins=origins,
            browser_inbound_rps=browser_rps,
            browser_inbound_burst=float(entry.get("browser_inbound_burst", 2 * browser_rps)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tenant {name}: {exc}") from None
    _check_browser_keys(tenant, entry)
    return tenant


def _origins(tenant: str, listed: Any) -> frozenset[str]:
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise ConfigError(f"tenant {tenant}: allowed_origins must be a list of strings")
    try:
        return frozenset(origin(item) for item in listed)
    except ValueError as exc:
        raise ConfigError(f"tenant {tenant}: allowed_origins: {exc}") from None


def _check_browser_keys(tenant: Tenant, entry: Mapping[str, Any]) -> None:
    """A browser key is public: what protects it is the origin list and its own limit,
    so a tenant with one must have both (and ``browser`` must be a real boolean: a
    quoted "false" must not make a key public)."""
    for key in entry.get("keys", []):
        if not isinstance(key.get("browser", False), bool):
            raise ConfigError(
                f"tenant {tenant.name}: key {key.get('id')!r}: browser is true or false"
            )
    browser_keys = [key.id for key in tenant.keys if key.browser]
    if not browser_keys:
        return
    if not tenant.allowed_origins:
        raise ConfigError(
            f"tenant {tenant.name}: browser key {browser_keys[0]!r} needs allowed_origins"
        )
    if tenant.browser_inbound_rps <= 0:
        raise ConfigError(
            f"tenant {tenant.name}: browser key {browser_keys[0]!r} needs browser_inbound_rps > 0 "
            "(the key is public: its limit is what protects the tenant)"
        )


def _entries(path: Path) -> dict[str, Any]:
    """The ``[tenants.<name>]`` tables of the file. Raises ``ConfigError``."""
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"RELAY_TENANTS_FILE={path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"RELAY_TENANTS_FILE={path}: {exc}") from None
    entries = document.get("tenants")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: no [tenants.<name>] tables")
    return entries


def tenant_names(settings: Settings) -> tuple[str, ...]:
    """The names ``load_tenants`` would give, without resolving any secret: tools that
    only sort events by tenant (``relay dlq``) need no upstream credentials.
    Raises ``ConfigError`` when the tenants file cannot be read."""
    if not settings.tenants_file:
        return (settings.tenant,)
    return tuple(_entries(Path(settings.tenants_file)))


def load_tenants(settings: Settings, environ: Mapping[str, str] | None = None) -> Tenants:
    """Raises ``ConfigError`` with the file, tenant and field at fault."""
    environ = os.environ if environ is None else environ
    if not settings.tenants_file:
        tenant = Tenant(
            settings.tenant,
            settings.upstream_token,
            settings.upstream_secret,
            app_id=settings.app_id,
            upstream_budget_rps=settings.upstream_budget_rps,
        )
        return Tenants({tenant.name: tenant}, open=True, _by_hash={})
    path = Path(settings.tenants_file)
    entries = _entries(path)
    tenants = {name: _tenant(name, entry, environ) for name, entry in entries.items()}
    _check_shared_budgets(path, tenants.values())
    by_hash: dict[str, tuple[Tenant, InboundKey]] = {}
    for tenant in tenants.values():
        for key in tenant.keys:
            if key.sha256 in by_hash:
                raise ConfigError(f"{path}: key {key.id} of {tenant.name} is used twice")
            by_hash[key.sha256] = (tenant, key)
    return Tenants(tenants, open=False, _by_hash=by_hash)


def append_key(path: Path, tenant: str, key_id: str) -> str:
    """Add a new key to ``tenant`` in the file; return the key (shown once, never stored).

    The file is an operator's: it is edited in place with tomlkit, so its comments,
    order and layout stay as they were, and the key goes where the tenant's keys are
    (one more ``[[tenants.<name>.keys]]`` table, or one more entry of an inline
    ``keys = [...]`` array). The edited text is read back before it replaces the
    file, which is replaced whole, so a failed edit leaves it as it was.
    Raises ``ConfigError`` naming the file and what is wrong with it."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key_id):
        raise ConfigError("key id: 1-64 letters, digits, . _ -")
    target = path.resolve()  # a symlinked file (a mounted secret) is edited, not replaced
    try:
        document = tomlkit.parse(target.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except TOMLKitError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    tenants = document.get("tenants")
    entry = tenants.get(tenant) if isinstance(tenants, Mapping) else None
    if not isinstance(entry, Table | InlineTable):
        raise ConfigError(f"{path}: no tenant {tenant!r}")
    key = new_key()
    _add_key_entry(path, tenant, entry, {"id": key_id, "sha256": hash_key(key)})
    text = tomlkit.dumps(document)
    try:
        written = tomllib.loads(text)["tenants"][tenant]["keys"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:  # never write what ingest refuses
        raise ConfigError(f"{path}: the file cannot take a key ({exc}); add it by hand") from None
    if written[-1].get("sha256") != hash_key(key):
        raise ConfigError(f"{path}: the new key did not land in tenants.{tenant}.keys")
    _replace(target, text)
    return key


def _add_key_entry(
    path: Path, tenant: str, entry: Table | InlineTable, key: dict[str, str]
) -> None:
    keys = entry.get("keys")
    if isinstance(keys, AoT):
        keys.append(_key_table(key))
    elif isinstance(keys, Array):
        inline = tomlkit.inline_table()
        inline.update(key)
        keys.append(inline)
    elif keys is not None:
        raise ConfigError(f"{path}: tenants.{tenant}.keys must be a list of keys")
    elif isinstance(entry, InlineTable):  # tenants.x = { ... }: the keys go inline too
        inline = tomlkit.inline_table()
        inline.update(key)
        array = tomlkit.array()
        array.append(inline)
        entry.append("keys", array)
    else:
        tables = tomlkit.aot()
        tables.append(_key_table(key))
        entry.append("keys", tables)


def _key_table(key: dict[str, str]) -> Table:
    table = tomlkit.table()
    for name, value in key.items():
        table.add(name, value)
    table.add(tomlkit.nl())  # a blank line before whatever table follows
    return table


def _replace(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and move it over, with the file's permissions."""
    scratch: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", delete=False
        ) as file:
            scratch = Path(file.name)
            file.write(text)
        shutil.copymode(path, scratch)
        os.replace(scratch, path)
    except OSError as exc:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
        raise ConfigError(f"{path}: {exc.strerror}") from None


def _check_shared_budgets(path: Path, tenants: Iterable[Tenant]) -> None:
    """The upstream counts requests per credential, so tenants sharing one share its
    budget (see relay/forward/credential.py), and must agree on it."""
    first: dict[str, Tenant] = {}
    for tenant in tenants:
        other = first.setdefault(tenant.upstream_token, tenant)
        if other.upstream_budget_rps != tenant.upstream_budget_rps:
            raise ConfigError(
                f"{path}: tenants {other.name} and {tenant.name} use the same upstream "
                f"credential but set upstream_budget_rps {other.upstream_budget_rps:g} and "
                f"{tenant.upstream_budget_rps:g}: the budget is the credential's, so set one value"
            )
