"""The device inventory: nethook's own YAML format, or an Ansible YAML inventory.

nethook format (``data/inventory.example.yml`` documents every field)::

    defaults: {platform: cisco_ios, username: "${DEVICE_USER}", password: "${DEVICE_PASSWORD}"}
    groups:
      core: {vars: {site: hq}, tags: [critical]}
    devices:
      r1: {host: 192.0.2.11, groups: [core], tags: [edge]}

A device's settings are merged from ``defaults``, then each of its groups in the order it
lists them, then its own keys; ``vars`` dicts are merged key by key and ``tags`` are
unioned. Credentials are *references*: ``${ENV}`` in ``username``/``password``/``secret``
or a ``password_file``/``secret_file``. They are resolved only when connecting
(:meth:`Device.credentials`), so listing an inventory needs no secrets and no secret ever
sits in a device's template view.

An Ansible inventory (a top-level ``all:`` or groups with ``hosts``/``children``) is read
too: ``ansible_host``, ``ansible_port``, ``ansible_user``, ``ansible_password`` (or
``ansible_ssh_pass``), ``ansible_become_password`` (enable secret) and
``ansible_network_os`` (mapped to a Netmiko ``device_type``); group ``vars`` are inherited
through ``children``; any other variable lands in the device's ``vars``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import interpolate, load_yaml
from ..exceptions import ConfigError, PermanentError
from .ansible import ansible_platform, ansible_to_native, is_ansible

__all__ = ["Credentials", "Device", "Inventory", "ansible_platform", "from_dict", "load"]

# Keys whose values stay unresolved references until connect time.
_CREDENTIAL_KEYS = frozenset({"username", "password", "secret"})


# --------------------------------------------------------------------------- file models


class _Fields(BaseModel):
    """Settings a device, a group or ``defaults`` may set (a device's own win)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    platform: str | None = None
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    secret: str | None = None
    secret_file: Path | None = None
    enable: bool | None = None
    verify_tls: bool | str | None = None
    restconf_port: int | None = Field(None, ge=1, le=65535)
    netconf_port: int | None = Field(None, ge=1, le=65535)
    vars: dict[str, Any] = {}
    tags: list[str] = []


class _Group(_Fields):
    description: str | None = None


class _Device(_Fields):
    groups: list[str] = []
    addresses: list[str] = []
    description: str | None = None


class _InventoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: _Fields = _Fields()
    groups: dict[str, _Group | None] = {}
    devices: dict[str, _Device | None] = {}


# --------------------------------------------------------------------------- resolved


@dataclass(frozen=True, slots=True)
class Credentials:
    """Resolved login data. Never logged, never stored, never shown to templates."""

    username: str
    password: str
    secret: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True, slots=True)
class Device:
    """One device with its settings merged from defaults and groups."""

    name: str
    host: str
    port: int = 22
    platform: str = "cisco_ios"
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    addresses: tuple[str, ...] = ()
    description: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    secret: str | None = field(default=None, repr=False)
    secret_file: Path | None = None
    #: Enter enable mode after login: None = only when a secret is set.
    enable: bool | None = None
    #: RESTCONF TLS: True (system CAs), False (no check), or a CA bundle path.
    verify_tls: bool | str = True
    restconf_port: int = 443
    netconf_port: int = 830

    def credentials(self, env: Mapping[str, str] | None = None) -> Credentials:
        """Resolve the credential references; a missing one is a permanent error."""
        environ = os.environ if env is None else env

        def ref(key: str, value: str | None, file: Path | None) -> str:
            if file is not None:
                try:
                    return file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise PermanentError(
                        f"device {self.name}: cannot read {key}_file {file}: {exc.strerror}"
                    ) from None
            if value is None:
                return ""
            try:
                return str(interpolate(value, dict(environ), f"devices.{self.name}.{key}"))
            except ConfigError as exc:
                raise PermanentError(f"device {self.name}: {exc}") from None

        username = ref("username", self.username, None)
        if not username:
            raise PermanentError(f"device {self.name}: no username in the inventory")
        return Credentials(
            username=username,
            password=ref("password", self.password, self.password_file),
            secret=ref("secret", self.secret, self.secret_file),
        )

    def wants_enable(self, creds: Credentials) -> bool:
        return self.enable if self.enable is not None else bool(creds.secret)

    def view(self) -> dict[str, Any]:
        """What templates see: no credentials."""
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "platform": self.platform,
            "groups": list(self.groups),
            "tags": list(self.tags),
            "vars": dict(self.vars),
            "addresses": list(self.addresses),
            "description": self.description,
        }


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class Inventory:
    """Devices by name, with groups and tags, and lookups by name, host or address."""

    def __init__(
        self,
        devices: Iterable[Device],
        group_vars: Mapping[str, Mapping[str, Any]] | None = None,
        source: Path | None = None,
    ) -> None:
        self._devices: dict[str, Device] = {d.name: d for d in devices}
        self.group_vars = dict(group_vars or {})
        self.source = source
        self._by_host: dict[str, Device] = {}
        self._by_ip: dict[Any, Device] = {}
        for dev in self._devices.values():
            for addr in (dev.host, *dev.addresses):
                self._by_host.setdefault(addr.lower(), dev)
                ip = _ip(addr)
                if ip is not None:
                    self._by_ip.setdefault(ip, dev)

    def __len__(self) -> int:
        return len(self._devices)

    def __iter__(self) -> Any:
        return iter(self._devices.values())

    def names(self) -> list[str]:
        return list(self._devices)

    def get(self, name: str) -> Device | None:
        return self._devices.get(name)

    def groups(self) -> dict[str, list[str]]:
        """Group name -> member device names (groups without members included)."""
        out: dict[str, list[str]] = {g: [] for g in self.group_vars}
        for dev in self._devices.values():
            for g in dev.groups:
                out.setdefault(g, []).append(dev.name)
        return out

    def tags(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for dev in self._devices.values():
            for t in dev.tags:
                out.setdefault(t, []).append(dev.name)
        return out

    def find(self, key: str) -> Device | None:
        """A device by name, then by host name or address (any spelling of an IP)."""
        key = key.strip()
        dev = self._devices.get(key)
        if dev is not None:
            return dev
        dev = self._by_host.get(key.lower())
        if dev is not None:
            return dev
        ip = _ip(key)
        return self._by_ip.get(ip) if ip is not None else None

    def by_address(self, address: str) -> Device | None:
        """The device that owns an address (a syslog sender), by host or ``addresses``."""
        ip = _ip(address)
        if ip is not None and ip in self._by_ip:
            return self._by_ip[ip]
        return self._by_host.get(address.strip().lower())

    def select(
        self,
        device: str | None = None,
        devices: Iterable[str] | None = None,
        group: str | None = None,
        tag: str | None = None,
    ) -> list[Device]:
        """Every device a target names (inventory order, no duplicates).

        An unknown device, an unknown group or a tag nobody has is a permanent error: a
        rule that targets nothing should say so, not succeed quietly.
        """
        chosen: set[str] = set()
        for key in [*([device] if device else []), *(devices or [])]:
            dev = self.find(key)
            if dev is None:
                raise PermanentError(f"device {key!r} is not in the inventory")
            chosen.add(dev.name)
        if group is not None:
            members = self.groups().get(group)
            if members is None:
                raise PermanentError(f"group {group!r} is not in the inventory")
            if not members:
                raise PermanentError(f"group {group!r} has no devices")
            chosen.update(members)
        if tag is not None:
            tagged = self.tags().get(tag)
            if not tagged:
                raise PermanentError(f"no device has the tag {tag!r}")
            chosen.update(tagged)
        return [d for name, d in self._devices.items() if name in chosen]

    def view(self) -> dict[str, Any]:
        """The inventory as templates see it (``inventory.devices.r1.host``): no secrets."""
        return {
            "devices": {name: d.view() for name, d in self._devices.items()},
            "groups": {
                g: {"devices": members, "vars": dict(self.group_vars.get(g, {}))}
                for g, members in self.groups().items()
            },
            "tags": self.tags(),
        }


# --------------------------------------------------------------------------- loading


def _merge(into: dict[str, Any], fields: _Fields) -> None:
    for key, value in fields.model_dump(exclude_unset=True).items():
        if key == "description" and not isinstance(fields, _Device):
            continue  # a group's description describes the group, not its members
        if key == "vars":
            into["vars"] = {**into.get("vars", {}), **value}
        elif key == "tags":
            into["tags"] = [*into.get("tags", []), *[t for t in value if t not in into["tags"]]]
        elif value is not None:
            into[key] = value


def _resolve_path(p: Any, base: Path | None) -> Any:
    if isinstance(p, Path) and base is not None and not p.is_absolute():
        return base / p
    return p


def _interpolate_settings(raw: Any, env: Mapping[str, str] | None, where: str = "") -> Any:
    """``${VAR}`` everywhere except credentials, which stay references until connect."""
    if isinstance(raw, dict):
        out = {}
        for k, v in raw.items():
            key_where = f"{where}.{k}" if where else str(k)
            if k in _CREDENTIAL_KEYS and isinstance(v, str):
                out[k] = v
            else:
                out[k] = _interpolate_settings(v, env, key_where)
        return out
    if isinstance(raw, list):
        return [_interpolate_settings(v, env, f"{where}[{i}]") for i, v in enumerate(raw)]
    if isinstance(raw, str):
        return interpolate(raw, dict(os.environ if env is None else env), where)
    return raw


def from_dict(
    raw: Any, base_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> Inventory:
    """Build an inventory from a loaded document (nethook or Ansible format)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("inventory: the document must be a mapping")
    if is_ansible(raw):
        raw = ansible_to_native(raw)
    raw = _interpolate_settings(raw, env)
    try:
        doc = _InventoryFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            [
                f"inventory.{'.'.join(str(p) for p in e['loc'])}: "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors()
            ]
        ) from None
    groups = {name: g or _Group() for name, g in doc.groups.items()}
    errors: list[str] = []
    devices: list[Device] = []
    for name, spec in doc.devices.items():
        spec = spec or _Device()
        merged: dict[str, Any] = {"vars": {}, "tags": []}
        _merge(merged, doc.defaults)
        for g in spec.groups:
            if g not in groups:
                errors.append(f"inventory.devices.{name}.groups: unknown group {g!r}")
                continue
            _merge(merged, groups[g])
        _merge(merged, spec)
        merged.pop("groups", None)
        merged.setdefault("host", name)
        for key in ("password_file", "secret_file"):
            merged[key] = _resolve_path(merged.get(key), base_dir)
        verify = merged.get("verify_tls")
        if isinstance(verify, str) and base_dir is not None and not Path(verify).is_absolute():
            merged["verify_tls"] = str(base_dir / verify)
        merged["vars"] = MappingProxyType(merged["vars"])
        for key in ("tags", "addresses"):
            merged[key] = tuple(merged.get(key, ()))
        fields: dict[str, Any] = merged
        devices.append(Device(name=name, groups=tuple(spec.groups), **fields))
    if errors:
        raise ConfigError(errors)
    return Inventory(devices, {g: dict(spec.vars) for g, spec in groups.items()})


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Inventory:
    """Read an inventory file; ConfigError names each bad key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"inventory: cannot read {p}: {exc.strerror}") from None
    try:
        raw = load_yaml(text)
    except Exception as exc:  # yaml.YAMLError and friends: one message, no traceback
        raise ConfigError(f"inventory {p}: cannot parse: {exc}") from None
    inv = from_dict(raw, base_dir=p.resolve().parent, env=env)
    inv.source = p
    return inv
