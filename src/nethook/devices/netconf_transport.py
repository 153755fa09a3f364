"""NETCONF over SSH (ncclient) as a session-pool transport.

A NETCONF session costs an SSH handshake, a login and a <hello> exchange; a <get> on an
open one costs a round trip. So the pool keeps them warm like CLI sessions, under the same
caps (a device's ``per_device`` lines and the global ``max_sessions``). ncclient is
imported only when a NETCONF action runs.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..config import DevicesConfig
from ..exceptions import PermanentError, TransientError
from .inventory import Credentials, Device
from .transport import AuthFailed, Transport


def netconf_connect(device: Device, creds: Credentials, cfg: DevicesConfig) -> Any:
    """Open an ncclient Manager (blocking), converting failures into our errors."""
    from ncclient import manager
    from ncclient.transport.errors import (
        AuthenticationError,
        SessionError,
        SSHError,
        TransportError,
    )

    where = f"{device.name} ({device.host}:{device.netconf_port})"
    try:
        return manager.connect(
            host=device.host,
            port=device.netconf_port,
            username=creds.username,
            password=creds.password,
            hostkey_verify=False,
            # Only the password we were given: a stray key counts as a failed login.
            allow_agent=False,
            look_for_keys=False,
            timeout=cfg.connect_timeout,
            # A warm session behind NAT or a firewall needs traffic to stay mapped.
            keepalive=max(1, int(cfg.keepalive)),
            device_params={"name": "default"},
        )
    except AuthenticationError as exc:
        raise AuthFailed(f"{where}: NETCONF authentication failed") from exc
    except (SSHError, TransportError, SessionError, OSError, EOFError) as exc:
        # SessionError: no <hello> in time, or the subsystem refused.
        raise TransientError(f"{where}: NETCONF {type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        raise PermanentError(f"{where}: NETCONF: {exc}") from exc


def _active(m: Any) -> bool:
    try:
        return bool(m.connected)
    except Exception:
        return False


def _close(m: Any) -> None:
    # close_session is a polite <close-session>, waited for at most a few seconds (the
    # Manager still has the last action's timeout, up to minutes, and a dead peer never
    # answers); then the transport is dropped whatever happened.
    with contextlib.suppress(Exception):
        if m.connected:
            m.timeout = min(float(m.timeout or _CLOSE_WAIT), _CLOSE_WAIT)
            m.close_session()
    with contextlib.suppress(Exception):
        m._session.close()


_CLOSE_WAIT = 3.0


def _probe(m: Any) -> bool:
    """A round trip: any reply (an <rpc-error> for this unknown operation included) proves
    the session answers; a timeout or a transport error says it does not."""
    from lxml import etree
    from ncclient.operations.rpc import RPCError

    if not _active(m):
        return False
    previous = m.timeout
    m.timeout = _CLOSE_WAIT
    try:
        m.dispatch(etree.Element("nethook-probe"))
    except RPCError:
        return True
    except Exception:
        return False
    finally:
        m.timeout = previous
    return True


def _is_dead(exc: BaseException) -> bool:
    try:
        from ncclient.transport.errors import SessionCloseError, TransportError
    except ImportError:  # pragma: no cover
        return isinstance(exc, OSError | EOFError)
    return isinstance(exc, SessionCloseError | TransportError | OSError | EOFError)


def _is_timeout(exc: BaseException) -> bool:
    try:
        from ncclient.operations.errors import TimeoutExpiredError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, TimeoutExpiredError)


#: NETCONF sessions over SSH (ncclient).
NETCONF = Transport(
    name="netconf",
    connect=netconf_connect,
    active=_active,
    probe=_probe,
    disconnect=_close,
    is_dead=_is_dead,
    is_timeout=_is_timeout,
    port=lambda device: device.netconf_port,
)
