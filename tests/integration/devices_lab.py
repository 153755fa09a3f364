"""A lab of fakenos Cisco IOS devices on loopback, for the device tests and the benchmark.

Each device is a real paramiko SSH server (fakenos) with a per-device state: a running
config that ``configure terminal`` lines change and ``show running-config`` prints, and a
count of SSH connections (and logins) the server accepted, so tests can see pooling and
"exactly one attempt" from the device's side.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import yaml

from ports import free_port

USERNAME = "netops"
PASSWORD = "lab-password-1"

SHOW_IP_INT_BRIEF = """\
Interface              IP-Address      OK? Method Status                Protocol
GigabitEthernet1       10.0.0.{n}        YES NVRAM  up                    up
GigabitEthernet2       unassigned      YES NVRAM  administratively down down
Loopback0              192.0.2.{n}       YES manual up                    up"""

#: Config lines the lab devices accept in config mode (and their ``no`` forms).
CONFIG_LINES = (
    "ntp server 192.0.2.123",
    "logging host 192.0.2.50",
    "snmp-server location lab-rack-7",
    "banner motd nethook-was-here",
)

_PROMPTS = ["{base_prompt}>", "{base_prompt}#"]
_CONFIG = "{base_prompt}(config)#"


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Poll until the SSH server accepts TCP (fakenos binds in a thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise TimeoutError(f"fakenos device on port {port} did not open in {timeout}s")


@dataclass
class LabDevice:
    name: str
    port: int
    index: int
    config: list[str] = field(default_factory=list)
    #: TCP connections accepted (port probes included), and those still open.
    connections: int = 0
    active: int = 0
    #: SSH password logins attempted: what "one connection" means to a device.
    logins: int = 0
    logins_failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def running_config(self) -> str:
        body = "\n".join(self.config)
        return (
            "Building configuration...\n\n"
            f"Current configuration : {len(body) + 40} bytes\n"
            f"! Last configuration change at {time.strftime('%H:%M:%S')} UTC\n"
            f"!\nversion 17.9\nhostname {self.name}\n!\n{body}\n!\nend"
        )

    def commands(self) -> dict[str, Any]:
        """fakenos command table for this device. Outputs are closures over ``self``
        (fakenos deep-copies the table per connection; functions are copied by reference,
        so the state is the device's, shared by every session)."""

        def show_run(*_: Any, **__: Any) -> str:
            with self.lock:
                return self.running_config()

        def setter(line: str, remove: bool) -> Any:
            def apply(*_: Any, **__: Any) -> str:
                with self.lock:
                    if remove and line in self.config:
                        self.config.remove(line)
                    elif not remove and line not in self.config:
                        self.config.append(line)
                return ""

            return apply

        cmds: dict[str, Any] = {
            "show ip interface brief": {
                "output": SHOW_IP_INT_BRIEF.format(n=self.index),
                "prompt": _PROMPTS,
            },
            "show running-config": {"output": show_run, "prompt": "{base_prompt}#"},
            # fakenos matches whole lines, so a read-only pipe is a command of its own.
            "show running-config | include hostname": {
                "output": f"hostname {self.name}",
                "prompt": "{base_prompt}#",
            },
            "configure terminal": {
                "output": "Enter configuration commands, one per line.  End with CNTL/Z.",
                "new_prompt": _CONFIG,
                "prompt": "{base_prompt}#",
            },
            "end": {"output": "", "new_prompt": "{base_prompt}#", "prompt": _CONFIG},
        }
        for line in CONFIG_LINES:
            cmds[line] = {"output": setter(line, False), "prompt": _CONFIG}
            cmds[f"no {line}"] = {"output": setter(line, True), "prompt": _CONFIG}
        return cmds


#: Every lab device by SSH port, for the counting server below.
_BY_PORT: dict[int, LabDevice] = {}
_local = threading.local()


def _counting_server() -> type:
    """fakenos's paramiko server, counting accepted connections and failed logins."""
    from fakenos.plugins.servers import ssh_server_paramiko as mod

    base = mod.ParamikoSshServerInterface
    if not getattr(base, "nethook_counting", False):

        class CountingInterface(base):  # type: ignore[misc,valid-type]
            nethook_counting = True

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                # Built in the connection's thread, which set the port (auth callbacks run
                # in paramiko's transport thread, so read it now).
                self.port = getattr(_local, "port", 0)

            def check_auth_password(self, username: str, password: str) -> int:
                result: int = super().check_auth_password(username, password)
                dev = _BY_PORT.get(self.port)
                if dev is not None:
                    with dev.lock:
                        dev.logins += 1
                        dev.logins_failed += result != 0  # 0 is paramiko.AUTH_SUCCESSFUL
                return result

        # The server builds its interface by module-level name: install ours once.
        mod.ParamikoSshServerInterface = CountingInterface

    class CountingServer(mod.ParamikoSshServer):  # type: ignore[misc]
        def connection_function(self, client: Any, is_running: Any) -> None:
            dev = _BY_PORT.get(self.port)
            if dev is not None:
                with dev.lock:
                    dev.connections += 1
                    dev.active += 1
            _local.port = self.port
            try:
                super().connection_function(client, is_running)
            except (EOFError, OSError, paramiko.SSHException):
                pass  # a port probe or a client that left mid-handshake: not a test failure
            except AttributeError:
                pass  # fakenos after a failed login: accept() gave no channel
            finally:
                if dev is not None:
                    with dev.lock:
                        dev.active -= 1

    return CountingServer


class Lab:
    """``n`` fakenos cisco_ios devices called ``{prefix}1..n`` on free loopback ports."""

    def __init__(self, names: Iterable[str], password: str = PASSWORD) -> None:
        from fakenos import FakeNOS

        self.devices = {name: LabDevice(name, free_port(), i + 1) for i, name in enumerate(names)}
        _BY_PORT.update({d.port: d for d in self.devices.values()})
        hosts = {
            d.name: {
                "username": USERNAME,
                "password": password,
                "port": d.port,
                "platform": "cisco_ios",
                "nos": {"plugin": "cisco_ios", "configuration": {"commands": d.commands()}},
            }
            for d in self.devices.values()
        }
        self.net = FakeNOS(inventory={"hosts": hosts})
        self.net.servers_plugins["ParamikoSshServer"] = _counting_server()

    def start(self) -> Lab:
        self.net.start()
        for d in self.devices.values():
            wait_port(d.port)
        return self

    def stop(self) -> None:
        self.net.stop()

    def restart(self, name: str) -> None:
        """Stop a device (its sessions drop) and start it again on the same port."""
        self.net.stop(name)
        self.net.start(name)
        wait_port(self.devices[name].port)

    def __getitem__(self, name: str) -> LabDevice:
        return self.devices[name]

    def inventory(self, **device_overrides: Any) -> dict[str, Any]:
        """A nethook inventory for the lab: credentials from ``${LAB_PASSWORD}``."""
        return {
            "defaults": {
                "platform": "cisco_ios",
                "username": USERNAME,
                "password": "${LAB_PASSWORD}",
                "enable": True,
            },
            "groups": {"lab": {"vars": {"site": "loopback"}, "tags": ["fake"]}},
            "devices": {
                d.name: {"host": "127.0.0.1", "port": d.port, "groups": ["lab"], **device_overrides}
                for d in self.devices.values()
            },
        }

    def write_inventory(self, path: Path, **extra_devices: Any) -> Path:
        inv = self.inventory()
        inv["devices"].update(extra_devices)
        path.write_text(yaml.safe_dump(inv, sort_keys=False))
        return path


@contextlib.contextmanager
def running_lab(names: Iterable[str]) -> Iterator[Lab]:
    lab = Lab(names).start()
    try:
        yield lab
    finally:
        lab.stop()
