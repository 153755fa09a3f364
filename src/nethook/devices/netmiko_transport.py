"""The Netmiko transport under the session pool: opening a session and reading its failures.

Everything that knows Netmiko and paramiko lives here (scrapli's layering: transport below,
pool above): :func:`netmiko_connect` converts connect failures into our errors (an auth
failure is permanent, a timeout transient), and the predicates tell the pool whether an
exception means the connection itself is gone. Netmiko is imported only when called.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from ..config import DevicesConfig
from ..exceptions import PermanentError, TransientError
from .inventory import Credentials, Device
from .transport import AuthFailed, Transport


def netmiko_connect(device: Device, creds: Credentials, cfg: DevicesConfig) -> Any:
    """Open a Netmiko session (blocking), converting failures into our errors."""
    import paramiko
    from netmiko import ConnectHandler
    from netmiko.exceptions import (
        NetmikoAuthenticationException,
        NetmikoTimeoutException,
        ReadException,
    )

    where = f"{device.name} ({device.host}:{device.port})"
    try:
        conn = ConnectHandler(
            device_type=device.platform,
            host=device.host,
            port=device.port,
            username=creds.username,
            password=creds.password,
            secret=creds.secret,
            conn_timeout=cfg.connect_timeout,
            auth_timeout=cfg.connect_timeout,
            banner_timeout=cfg.connect_timeout,
            keepalive=max(1, int(cfg.keepalive)),
            # Only the password we were given: no agent, no ~/.ssh keys. A stray key that
            # fails counts as a failed login on many devices.
            use_keys=False,
            allow_agent=False,
            ssh_strict=False,
            system_host_keys=False,
            read_timeout_override=None,
        )
    except NetmikoAuthenticationException as exc:
        raise AuthFailed(f"{where}: authentication failed") from exc
    except NetmikoTimeoutException as exc:
        raise TransientError(f"{where}: connect timed out or refused") from exc
    except ValueError as exc:  # unsupported device_type and the like
        raise PermanentError(f"{where}: {exc}") from exc
    except (OSError, EOFError, paramiko.SSHException, ReadException) as exc:
        raise TransientError(f"{where}: connect failed: {type(exc).__name__}: {exc}") from exc
    try:
        if device.wants_enable(creds) and not conn.check_enable_mode():
            conn.enable()
    except ValueError as exc:  # Netmiko: "Failed to enter enable mode"
        quiet_disconnect(conn)
        raise PermanentError(f"{where}: cannot enter enable mode (check the secret)") from exc
    except (OSError, EOFError, ReadException) as exc:
        quiet_disconnect(conn)
        raise TransientError(f"{where}: session lost while entering enable mode") from exc
    return conn


def quiet_disconnect(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.disconnect()


def transport_active(conn: Any) -> bool:
    try:
        return bool(conn.remote_conn.transport.is_active())
    except AttributeError:
        return False


def is_dead(exc: BaseException) -> bool:
    """Does this exception mean the connection itself is gone?"""
    try:
        import paramiko
        from netmiko.exceptions import ReadTimeout, WriteException
    except ImportError:  # pragma: no cover - only with a custom connector
        return isinstance(exc, (OSError, EOFError))
    if isinstance(exc, ReadTimeout):
        return False  # the device is slow or the prompt odd: not a dead transport
    return isinstance(exc, (OSError, EOFError, socket.timeout, WriteException)) or (
        isinstance(exc, paramiko.SSHException) and "not active" in str(exc).lower()
    )


def is_read_timeout(exc: BaseException) -> bool:
    try:
        from netmiko.exceptions import ReadTimeout
    except ImportError:  # pragma: no cover - only with a custom connector
        return False
    return isinstance(exc, ReadTimeout)


def _probe(conn: Any) -> bool:
    try:
        return bool(conn.find_prompt())
    except Exception:
        return False


#: Netmiko CLI sessions (the pool's default transport).
NETMIKO = Transport(
    name="ssh",
    connect=netmiko_connect,
    active=transport_active,
    probe=_probe,
    disconnect=quiet_disconnect,
    is_dead=is_dead,
    is_timeout=is_read_timeout,
    port=lambda device: device.port,
)
