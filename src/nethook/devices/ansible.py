"""Ansible YAML inventories, translated into nethook's inventory format.

``all:`` (or top-level groups) with ``hosts``, ``children`` and ``vars``. Connection
variables map to device fields: ``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_password``/``ansible_ssh_pass``, ``ansible_become_password`` (enable secret),
``ansible_network_os`` (to a Netmiko ``device_type``); ``nethook_<field>`` sets any nethook
field; every other variable becomes a device var. Pure: dicts in, dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# ansible_network_os (short or collection form) -> Netmiko device_type.
ANSIBLE_PLATFORMS: dict[str, str] = {
    "ios": "cisco_ios",
    "iosxr": "cisco_xr",
    "nxos": "cisco_nxos",
    "asa": "cisco_asa",
    "eos": "arista_eos",
    "junos": "juniper_junos",
    "vyos": "vyos",
    "routeros": "mikrotik_routeros",
    "frr": "linux",
    "exos": "extreme_exos",
    "icx": "ruckus_fastiron",
    "dellos10": "dell_os10",
    "os10": "dell_os10",
    "panos": "paloalto_panos",
    "fortios": "fortinet",
    "aoscx": "aruba_aoscx",
    "ce": "huawei",
    "cloudengine": "huawei",
}

_ANSIBLE_KEYS = {
    "ansible_host": "host",
    "ansible_port": "port",
    "ansible_user": "username",
    "ansible_password": "password",
    "ansible_ssh_pass": "password",
    "ansible_become_password": "secret",
    "ansible_become_pass": "secret",
}
# Ansible connection plumbing that means nothing to nethook: dropped, not kept as vars.
_ANSIBLE_IGNORED = {"ansible_connection", "ansible_become", "ansible_become_method"}


def is_ansible(raw: Mapping[str, Any]) -> bool:
    """An Ansible YAML inventory: ``all:``, or top-level groups with hosts/children."""
    if "devices" in raw or "defaults" in raw:
        return False
    if "all" in raw:
        return True
    return any(isinstance(v, dict) and ("hosts" in v or "children" in v) for v in raw.values())


def ansible_platform(network_os: str) -> str:
    """``cisco.ios.ios`` or ``ios`` -> ``cisco_ios``; an unknown name is kept as written."""
    short = network_os.rsplit(".", 1)[-1].lower()
    return ANSIBLE_PLATFORMS.get(short, network_os)


def ansible_to_native(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Translate an Ansible inventory into nethook's format.

    Group variables are inherited down ``children``; a host's own variables win, and for a
    host in several groups, later groups (in file order) win over earlier ones.
    """
    root = raw["all"] if "all" in raw else {"children": dict(raw)}
    host_vars: dict[str, dict[str, Any]] = {}
    host_groups: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, Any]] = {}

    def walk(name: str, node: Mapping[str, Any] | None, inherited: dict[str, Any]) -> list[str]:
        node = node or {}
        own = dict(node.get("vars") or {})
        scope = {**inherited, **own}
        if name not in ("all", "ungrouped"):
            group_vars.setdefault(name, {}).update(own)
        members: list[str] = []
        for host, hv in (node.get("hosts") or {}).items():
            merged = host_vars.setdefault(host, {})
            # Group scope fills in; a host's own vars (set once, first sighting) stay on top.
            explicit = merged.pop("__own__", {})
            merged.update(scope)
            explicit.update(hv or {})
            merged.update(explicit)
            merged["__own__"] = explicit
            members.append(host)
        for child, cnode in (node.get("children") or {}).items():
            members.extend(walk(child, cnode, scope))
        if name not in ("all", "ungrouped"):
            for host in members:
                groups = host_groups.setdefault(host, [])
                if name not in groups:
                    groups.append(name)
        return members

    walk("all", root, {})
    devices: dict[str, Any] = {}
    for host, hv in host_vars.items():
        hv.pop("__own__", None)
        spec: dict[str, Any] = {"groups": host_groups.get(host, []), "vars": {}}
        for key, value in hv.items():
            if key in _ANSIBLE_KEYS:
                spec[_ANSIBLE_KEYS[key]] = value
            elif key == "ansible_network_os":
                spec["platform"] = ansible_platform(str(value))
            elif key.startswith("nethook_"):
                spec[key.removeprefix("nethook_")] = value  # nethook_verify_tls: false
            elif key not in _ANSIBLE_IGNORED:
                spec["vars"][key] = value
        if "port" in spec:
            spec["port"] = int(spec["port"])
        devices[host] = spec
    return {
        # Connection variables (ansible_user, ansible_password...) reach devices above; the
        # group's template view keeps only user variables, never a credential.
        "groups": {
            g: {"vars": {k: x for k, x in v.items() if not k.startswith("ansible_")}}
            for g, v in group_vars.items()
        },
        "devices": devices,
    }
