"""The inventory: merging, credential references, lookups, targets, Ansible (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nethook.devices import inventory as inv_mod
from nethook.devices.inventory import Inventory
from nethook.exceptions import ConfigError, PermanentError

ROOT = Path(__file__).resolve().parents[2]

NATIVE: dict[str, Any] = {
    "defaults": {
        "platform": "cisco_ios",
        "username": "${DEV_USER}",
        "password": "${DEV_PASS}",
        "vars": {"owner": "netops", "site": "unknown"},
        "tags": ["managed"],
    },
    "groups": {
        "core": {"vars": {"site": "hq", "role": "core"}, "tags": ["critical"], "port": 2222},
        "xe": {"platform": "cisco_xe", "vars": {"role": "edge"}, "description": "IOS-XE"},
    },
    "devices": {
        "r1": {"host": "192.0.2.11", "groups": ["core"], "tags": ["edge"], "vars": {"rack": 7}},
        "r2": {"host": "2001:db8::2", "groups": ["core", "xe"], "addresses": ["198.51.100.2"]},
        "r3": {"port": 22, "enable": False, "secret": "${DEV_ENABLE:-en}"},
        "lab1": None,
    },
}


def native(**env: str) -> Inventory:
    return inv_mod.from_dict(NATIVE, env=env)


def test_merge_order_vars_and_tags() -> None:
    inv = native()
    r1, r2, r3 = (inv.get(n) for n in ("r1", "r2", "r3"))
    assert r1 is not None and r2 is not None and r3 is not None
    assert r1.port == 2222 and r1.platform == "cisco_ios"  # group over defaults
    assert dict(r1.vars) == {"owner": "netops", "site": "hq", "role": "core", "rack": 7}
    assert r1.tags == ("managed", "critical", "edge")
    assert r1.groups == ("core",)
    # Later groups win: xe after core.
    assert r2.platform == "cisco_xe" and r2.vars["role"] == "edge" and r2.vars["site"] == "hq"
    assert r2.description is None  # a group's description is not its members'
    assert r3.port == 22 and r3.enable is False
    lab1 = inv.get("lab1")
    assert lab1 is not None and lab1.host == "lab1"  # host defaults to the name
    assert inv.names() == ["r1", "r2", "r3", "lab1"]


def test_credentials_are_references_resolved_at_login(tmp_path: Path) -> None:
    inv = native()  # no DEV_* variables needed to load or list
    r3 = inv.get("r3")
    assert r3 is not None
    creds = r3.credentials(env={"DEV_USER": "alice", "DEV_PASS": "s3cret"})
    assert (creds.username, creds.password, creds.secret) == ("alice", "s3cret", "en")
    assert "s3cret" not in repr(creds) and "s3cret" not in repr(r3)
    assert r3.wants_enable(creds) is False  # explicit enable: false wins over the secret
    with pytest.raises(PermanentError, match=r"devices\.r3\.password: .*DEV_PASS"):
        r3.credentials(env={"DEV_USER": "alice"})

    (tmp_path / "pw").write_text("from-file\n")
    inv = inv_mod.from_dict(
        {"devices": {"x": {"username": "bob", "password_file": "pw"}}}, base_dir=tmp_path
    )
    x = inv.get("x")
    assert x is not None and x.credentials(env={}).password == "from-file"
    assert x.wants_enable(x.credentials(env={})) is False  # no secret, no enable
    gone = inv_mod.from_dict({"devices": {"y": {"username": "u", "password_file": "/nope"}}})
    y = gone.get("y")
    assert y is not None
    with pytest.raises(PermanentError, match="cannot read password_file"):
        y.credentials(env={})


def test_template_view_has_no_secrets() -> None:
    inv = inv_mod.from_dict(
        {
            "defaults": {"username": "admin", "password": "hunter2-literal", "secret": "en-pw"},
            "devices": {"r1": {"host": "192.0.2.1"}},
        }
    )
    view = inv.view()
    text = json.dumps(view)
    assert "hunter2" not in text and "en-pw" not in text and "admin" not in text
    assert view["devices"]["r1"]["host"] == "192.0.2.1"


def test_find_by_name_host_and_any_ip_spelling() -> None:
    inv = native()
    assert inv.find("r1") is inv.get("r1")
    assert inv.find("192.0.2.11") is inv.get("r1")
    assert inv.find("2001:DB8:0:0::2") is inv.get("r2")  # same address, other spelling
    assert inv.find("[2001:db8::2]") is inv.get("r2")
    assert inv.find("198.51.100.2") is inv.get("r2")  # an extra address
    assert inv.by_address("198.51.100.2") is inv.get("r2")  # e.g. a syslog source
    assert inv.find("LAB1") is inv.get("lab1")  # host names are case-insensitive
    assert inv.find("192.0.2.99") is None and inv.by_address("192.0.2.99") is None


def test_select_targets() -> None:
    inv = native()

    def names(**kw: Any) -> list[str]:
        return [d.name for d in inv.select(**kw)]

    assert names(device="192.0.2.11") == ["r1"]
    assert names(group="core") == ["r1", "r2"]
    assert names(tag="managed") == ["r1", "r2", "r3", "lab1"]
    assert names(tag="edge", devices=["r3", "r1"]) == ["r1", "r3"]  # inventory order, once
    with pytest.raises(PermanentError, match="'r9' is not in the inventory"):
        inv.select(device="r9")
    with pytest.raises(PermanentError, match="group 'nope'"):
        inv.select(group="nope")
    with pytest.raises(PermanentError, match="tag 'nope'"):
        inv.select(tag="nope")
    empty = inv_mod.from_dict({"groups": {"g": {}}, "devices": {}})
    with pytest.raises(PermanentError, match="has no devices"):
        empty.select(group="g")


def test_bad_inventory_names_each_problem() -> None:
    with pytest.raises(ConfigError) as info:
        inv_mod.from_dict({"devices": {"r1": {"hots": "x", "port": 70000}}})
    text = str(info.value)
    assert "inventory.devices.r1.hots: unknown key" in text
    assert "inventory.devices.r1.port" in text
    with pytest.raises(ConfigError, match="unknown group 'core'"):
        inv_mod.from_dict({"devices": {"r1": {"groups": ["core"]}}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        inv_mod.from_dict(["r1"])


def test_env_in_settings_is_read_at_load(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("devices:\n  r1: {host: '${R1_HOST}', port: 22, enable: off}\n")
    with pytest.raises(ConfigError, match="R1_HOST"):
        inv_mod.load(path, env={})
    inv = inv_mod.load(path, env={"R1_HOST": "192.0.2.5"})
    r1 = inv.get("r1")
    # `off` stays a string under YAML 1.2; pydantic reads it as False, so a YAML 1.1 habit
    # still means what it says.
    assert r1 is not None and r1.host == "192.0.2.5" and r1.enable is False
    assert inv.source == path


ANSIBLE = """
all:
  vars:
    ansible_user: netops
    ansible_password: "${NET_PASS}"
    ansible_network_os: cisco.ios.ios
    ntp: 192.0.2.123
  children:
    routers:
      vars: {role: router, ansible_become_password: "${ENABLE}"}
      children:
        core:
          hosts:
            core1: {ansible_host: 192.0.2.1, ansible_port: 2222}
            core2: {ansible_host: 192.0.2.2, role: spine}
        edge:
          vars: {ansible_network_os: nxos}
          hosts:
            edge1: {ansible_host: 192.0.2.3, ansible_ssh_pass: other, nethook_verify_tls: false}
    switches:
      hosts:
        core1:
        sw1: {ansible_network_os: arista.eos.eos, ansible_connection: network_cli}
  hosts:
    jump: {ansible_host: 192.0.2.250, ansible_network_os: junos}
"""


def test_ansible_inventory(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(ANSIBLE)
    inv = inv_mod.load(path)
    core1, core2, edge1, sw1, jump = (
        inv.get(n) for n in ("core1", "core2", "edge1", "sw1", "jump")
    )
    assert core1 and core2 and edge1 and sw1 and jump
    assert (core1.host, core1.port, core1.platform) == ("192.0.2.1", 2222, "cisco_ios")
    assert core1.groups == ("core", "routers", "switches")
    assert dict(core1.vars) == {"ntp": "192.0.2.123", "role": "router"}
    assert core2.vars["role"] == "spine"  # host vars beat group vars
    assert edge1.platform == "cisco_nxos" and edge1.verify_tls is False
    assert sw1.platform == "arista_eos" and "ansible_connection" not in sw1.vars
    assert jump.platform == "juniper_junos" and jump.groups == ()
    env = {"NET_PASS": "pw", "ENABLE": "en"}
    assert core1.credentials(env).password == "pw" and core1.credentials(env).secret == "en"
    assert edge1.credentials(env).password == "other"
    assert inv.select(group="routers") == [core1, core2, edge1]
    # Group views keep user variables only: no ansible_* connection data, no passwords.
    view = inv.view()
    assert view["groups"]["routers"]["vars"] == {"role": "router"}
    assert "${ENABLE}" not in json.dumps(view)


def test_ansible_without_all() -> None:
    inv = inv_mod.from_dict({"lab": {"hosts": {"r1": {"ansible_network_os": "ios"}}}})
    r1 = inv.get("r1")
    assert r1 is not None and r1.platform == "cisco_ios" and r1.groups == ("lab",)
    assert inv_mod.ansible_platform("vendor.thing.custom_os") == "vendor.thing.custom_os"


def test_example_inventory_documents_every_field() -> None:
    path = ROOT / "data" / "inventory.example.yml"
    inv = inv_mod.load(path, env={})
    assert {"r1", "r2", "sandbox-iosxe"} <= set(inv.names())
    # The classic device_status_check payload names this host: it resolves.
    assert inv.find("sandbox-iosxe-latest-1.cisco.com") is inv.get("sandbox-iosxe")
    text = path.read_text()
    fields = set(inv_mod._Device.model_fields) | set(inv_mod._Group.model_fields)
    missing = sorted(f for f in fields if f"{f}:" not in text)
    assert not missing, f"not documented in {path.name}: {missing}"
