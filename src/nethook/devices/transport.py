"""What the session pool needs from a kind of connection: the transport interface.

The pool (:mod:`nethook.devices.sessions`) keeps sessions warm, leases them, checks their
health and closes them; a :class:`Transport` says how, for one protocol. Two ship:
Netmiko CLI over SSH (:data:`nethook.devices.netmiko_transport.NETMIKO`) and NETCONF over
SSH with ncclient (:data:`nethook.devices.netconf_transport.NETCONF`). Every function runs
in a pool thread (they block) and must not raise except where it says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import DevicesConfig
from ..exceptions import PermanentError
from .inventory import Credentials, Device

#: Opens a connection (blocking; runs in a pool thread). Raises our errors only:
#: :class:`AuthFailed` (permanent), TransientError, PermanentError.
Connector = Callable[[Device, Credentials, DevicesConfig], Any]


class SessionDead(Exception):
    """The connection under a command is gone (EOF, reset, closed socket)."""


class AuthFailed(PermanentError):
    """The device refused the credentials. Permanent: retrying could lock the account."""


@dataclass(frozen=True)
class Transport:
    """One protocol's answers to the pool's questions."""

    name: str
    connect: Connector
    #: Is the connection still up (cheap, no round trip)?
    active: Callable[[Any], bool]
    #: A round trip that proves the session answers (after ``health_check_after`` idle).
    probe: Callable[[Any], bool]
    #: Close, ignoring every error.
    disconnect: Callable[[Any], None]
    #: Does this exception mean the connection itself is gone?
    is_dead: Callable[[BaseException], bool]
    #: Did the device not answer in time (the session may be out of step)?
    is_timeout: Callable[[BaseException], bool]
    #: The port a device is reached on (part of the auth-failure fingerprint).
    port: Callable[[Device], int]
