"""RESTCONF, NETCONF and the example config's device routes, through a real ``nethook serve``.

Peers on loopback: a TLS RESTCONF server (pytest-httpserver with a trustme CA) answering
``application/yang-data+json`` with HTTP basic auth; the ``netconf`` package's SSH server
with get/get-config and subtree/xpath filtering; one fakenos IOS device. The server runs
``examples/nethook.yml`` as shipped (only store paths, port and inventory set), so its
``/device/command``, ``/restconf/system`` and ``/netconf/system`` routes are the ones users get.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devices_lab import PASSWORD, USERNAME, Lab
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import ROOT, TOKEN, Server, free_port, require_service
from nethook.config import load_yaml

pytestmark = pytest.mark.integration

SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
SYSTEM = {
    "ietf-system:system": {
        "hostname": "r1",
        "contact": "noc@example.net",
        "ntp": {"enabled": True, "server": [{"name": "ntp1"}, {"name": "ntp2"}]},
    }
}
SYSTEM_BODY = json.dumps(SYSTEM, indent=1).encode()

# The same data, with two different namespace prefixes (and a default namespace) on the
# wire: parsed outputs must not depend on which one a device picks.
SYSTEM_XML = {
    "sys": f"""<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <sys:system xmlns:sys="{SYS_NS}"><sys:hostname>r1</sys:hostname>
    <sys:ntp><sys:enabled>true</sys:enabled></sys:ntp></sys:system>
  <sys:system-state xmlns:sys="{SYS_NS}"><sys:platform>lab</sys:platform></sys:system-state>
</data>""",
    "default": f"""<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <system xmlns="{SYS_NS}"><hostname>r1</hostname><ntp><enabled>true</enabled></ntp></system>
  <system-state xmlns="{SYS_NS}"><platform>lab</platform></system-state>
</data>""",
}


# --------------------------------------------------------------------------- RESTCONF peer


class Restconf:
    """RFC 8040 data resources behind basic auth; records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return Response("", status=401, headers={"WWW-Authenticate": 'Basic realm="rc"'})
        if request.headers.get("Accept") != "application/yang-data+json":
            return Response("", status=406)
        if request.path == "/restconf/data/ietf-system:system":
            return Response(SYSTEM_BODY, content_type="application/yang-data+json")
        err = {"ietf-restconf:errors": {"error": [{"error-tag": "invalid-value"}]}}
        return Response(json.dumps(err), status=404, content_type="application/yang-data+json")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    try:
        import trustme
    except ImportError as exc:
        require_service("trustme", str(exc))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ca_path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return {"server_ctx": ctx, "ca": ca_path}


@pytest.fixture(scope="module")
def restconf(tls: dict[str, Any]) -> Iterator[Restconf]:
    server = HTTPServer(host="127.0.0.1", port=free_port(), ssl_context=tls["server_ctx"])
    handler = Restconf()
    server.expect_request(re.compile(r"^/restconf/data/"), method="GET").respond_with_handler(
        handler
    )
    server.start()
    handler.port = server.port  # type: ignore[attr-defined]
    yield handler
    server.clear()
    server.stop()


# --------------------------------------------------------------------------- NETCONF peer


#: The NETCONF server's session id for every RPC it answered, in order.
NC_SESSIONS: list[Any] = []


@pytest.fixture(scope="module")
def netconf_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    try:
        import paramiko
        from lxml import etree
        from netconf import nsmap_add, server, util
    except ImportError as exc:
        require_service("netconf", f"the netconf package (needs paramiko<4): {exc}")
    nsmap_add("sys", SYS_NS)  # the server's xpath evaluation and subtree filters use it
    key = tmp_path_factory.mktemp("nc") / "host_key"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(key))

    class Methods(server.NetconfMethods):  # type: ignore[misc]
        def _data(self, rpc: Any, flt: Any, variant: str) -> Any:
            data = etree.fromstring(SYSTEM_XML[variant])
            if flt is not None and flt.get("type") == "xpath":
                # RFC 6241 writes type/select unqualified (as ncclient sends them); the
                # package only looks for nc:-qualified ones.
                return util.xpath_filter_result(data, flt.get("select"))
            # A container-only subtree filter (<system/>) selects the whole container;
            # the package's filter code needs a child to select, so do that case here.
            if flt is not None and len(flt) and not len(flt[0]):
                keep = etree.QName(flt[0].tag)
                for child in list(data):
                    if etree.QName(child.tag) != keep:
                        data.remove(child)
                return data
            return util.filter_results(rpc, data, flt)

        def rpc_get_config(self, session: Any, rpc: Any, source: Any, flt: Any) -> Any:
            NC_SESSIONS.append(session.session_id)
            return self._data(rpc, flt, "sys")

        def rpc_get(self, session: Any, rpc: Any, flt: Any) -> Any:
            NC_SESSIONS.append(session.session_id)
            return self._data(rpc, flt, "default")

    port = free_port()
    ctl = server.SSHUserPassController(username=USERNAME, password=PASSWORD)
    srv = server.NetconfSSHServer(
        server_ctl=ctl, server_methods=Methods(), port=port, host_key=str(key)
    )
    yield port
    srv.close()


# --------------------------------------------------------------------------- nethook


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    try:
        import fakenos  # noqa: F401
    except ImportError as exc:
        require_service("fakenos", str(exc))
    lab = Lab(["r1"]).start()
    yield lab
    lab.stop()


EXTRA_RULES: list[dict[str, Any]] = [
    {
        "name": "fan",
        "on": {"type": "fan"},
        "do": [
            {
                "restconf.get": {
                    "devices": "{{ event.data.devices | default(none) }}",
                    "group": "{{ event.data.group | default(none) }}",
                    "partial_ok": "{{ event.data.partial | default(false) }}",
                    "path": "ietf-system:system",
                }
            },
            {
                "netconf.get_config": {
                    "devices": "{{ event.data.devices | default(none) }}",
                    "group": "{{ event.data.group | default(none) }}",
                    "partial_ok": "{{ event.data.partial | default(false) }}",
                    "filter": f'<system xmlns="{SYS_NS}"/>',
                }
            },
        ],
    },
    {
        "name": "rc",
        "on": {"type": "rc"},
        "do": [
            {"restconf.get": {"device": "{{ event.data.device }}", "path": "{{ event.data.path }}"}}
        ],
    },
    {
        "name": "nc",
        "on": {"type": "nc"},
        "do": [
            {
                "netconf.get": {
                    "device": "{{ event.data.device }}",
                    "filter": "{{ event.data.filter | default(none) }}",
                    "xpath": "{{ event.data.xpath | default(none) }}",
                    "namespaces": {"sys": SYS_NS},
                }
            }
        ],
    },
]


@pytest.fixture(scope="module")
def server(
    lab: Lab,
    restconf: Restconf,
    netconf_port: int,
    tls: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("yang")
    port = free_port()
    # Read as nethook does (YAML 1.2 booleans): PyYAML would turn `on:` into True.
    cfg = load_yaml((ROOT / "examples/nethook.yml").read_text())
    cfg["server"]["port"] = port
    cfg["store"] = {"url": f"sqlite:///{workdir / 'nethook.db'}", "data_dir": str(workdir / "data")}
    cfg["dispatcher"] = {"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 2}
    cfg["rules"] = [*cfg["rules"], *copy.deepcopy(EXTRA_RULES)]
    rc_port = restconf.port  # type: ignore[attr-defined]
    common = {"host": "127.0.0.1", "restconf_port": rc_port, "netconf_port": netconf_port}
    inv = lab.inventory()
    inv["devices"]["r1"].update(common, verify_tls=str(tls["ca"]))
    inv["devices"]["untrusted"] = {**common, "groups": ["lab"]}  # verify against system CAs
    inv["devices"]["insecure"] = {**common, "verify_tls": False}
    inv["devices"]["wrongpw"] = {**common, "verify_tls": False, "password": "nope"}
    (workdir / "inventory.yml").write_text(yaml.safe_dump(inv))
    cfg["inventory"] = str(workdir / "inventory.yml")
    path = workdir / "nethook.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {"LAB_PASSWORD": PASSWORD, "NETHOOK_TOKEN": TOKEN}
    srv = Server(path, port, workdir).start(env=env)
    yield srv
    srv.stop()


def post(srv: Server, path: str, body: dict[str, Any], wait: float = 30) -> dict[str, Any]:
    r = httpx.post(
        f"{srv.url}{path}?wait={wait}",
        json=body,
        headers={"X-Webhook-Token": TOKEN},
        timeout=wait + 10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def event(srv: Server, type_: str, **data: Any) -> dict[str, Any]:
    return post(srv, "/events", {"event": type_, "data": data})


def artifacts(srv: Server, event_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{srv.url}/api/events/{event_id}", timeout=5)
    return list(r.json()["artifacts"])


# --------------------------------------------------------------------------- the routes


def test_route_device_command(server: Server) -> None:
    out = post(server, "/device/command", {"device": "r1", "command": "show ip interface brief"})
    assert out["status"] == "succeeded", out
    step = out["results"]["device command"]["0"]
    assert step["device"] == "r1" and "Loopback0" in step["output"]
    (art,) = artifacts(server, out["id"])
    assert Path(art["path"]).read_text() == step["output"]


def test_route_restconf_system(server: Server, restconf: Restconf) -> None:
    out = post(server, "/restconf/system", {"device": "r1"})
    assert out["status"] == "succeeded", out
    step = out["results"]["restconf system"]["0"]
    assert step["data"] == SYSTEM and step["status"] == 200
    assert step["summary"] == {"keys": ["ietf-system:system"]}
    req = restconf.requests[-1]
    assert req.headers["Accept"] == "application/yang-data+json"
    (art,) = artifacts(server, out["id"])
    assert Path(art["path"]).read_bytes() == SYSTEM_BODY  # raw, byte for byte
    assert art["content_type"] == "application/yang-data+json"


def test_route_netconf_system(server: Server) -> None:
    out = post(server, "/netconf/system", {"device": "r1"})
    assert out["status"] == "succeeded", out
    step = out["results"]["netconf system"]["0"]
    assert step["data"] == {"system": {"hostname": "r1", "ntp": {"enabled": "true"}}}
    (art,) = artifacts(server, out["id"])
    raw = Path(art["path"]).read_text()
    assert art["name"] == "r1-netconf-get_config.xml" and "sys:hostname" in raw


# --------------------------------------------------------------------------- RESTCONF


def test_restconf_401_is_permanent(server: Server, restconf: Restconf) -> None:
    before = len(restconf.requests)
    out = event(server, "rc", device="wrongpw", path="ietf-system:system")
    assert out["status"] == "dead" and "HTTP 401" in out["error"]
    assert len(restconf.requests) - before == 1  # not retried


def test_restconf_404_is_permanent(server: Server) -> None:
    out = event(server, "rc", device="r1", path="ietf-interfaces:interfaces")
    assert out["status"] == "dead" and "HTTP 404" in out["error"]


def test_restconf_tls_verification(server: Server) -> None:
    # The lab CA is not a system CA: refused, permanently, with the fix in the message.
    out = event(server, "rc", device="untrusted", path="ietf-system:system")
    assert out["status"] == "dead" and "not trusted" in out["error"]
    out = event(server, "rc", device="insecure", path="ietf-system:system")
    assert out["status"] == "succeeded", out


@pytest.mark.parametrize("path", ["../../etc/passwd", "ietf-system:system?depth=1", "a b"])
def test_restconf_path_from_event_stays_in_data(server: Server, path: str) -> None:
    out = event(server, "rc", device="r1", path=path)
    assert out["status"] == "dead" and "plain RESTCONF data path" in out["error"]


# --------------------------------------------------------------------------- NETCONF


def test_netconf_subtree_filter_and_prefix_independence(server: Server) -> None:
    flt = f'<system xmlns="{SYS_NS}"><hostname/></system>'
    out = event(server, "nc", device="r1", filter=flt)
    assert out["status"] == "succeeded", out
    # <get> answers with a default namespace, <get-config> with "sys:" prefixes: the
    # parsed output is the same shape.
    assert out["results"]["nc"]["0"]["data"] == {"system": {"hostname": "r1"}}


def test_netconf_xpath_filter(server: Server) -> None:
    out = event(server, "nc", device="r1", xpath="/sys:system-state")
    assert out["status"] == "succeeded", out
    assert out["results"]["nc"]["0"]["data"] == {"system-state": {"platform": "lab"}}


def test_netconf_sessions_stay_warm_between_events(server: Server) -> None:
    # Seen from the server: three events, three RPCs, one NETCONF session.
    before = len(NC_SESSIONS)
    for _ in range(3):
        out = event(server, "nc", device="insecure", filter=f'<system xmlns="{SYS_NS}"/>')
        assert out["status"] == "succeeded", out
    ids = NC_SESSIONS[before:]
    assert len(ids) == 3 and len(set(ids)) == 1, ids


def test_netconf_auth_failure_is_permanent(server: Server) -> None:
    out = event(server, "nc", device="wrongpw", filter=f'<system xmlns="{SYS_NS}"/>')
    assert out["status"] == "dead" and "NETCONF authentication failed" in out["error"]
    runs = httpx.get(f"{server.url}/api/events/{out['id']}", timeout=5).json()["runs"]
    assert len(runs) == 1


# --------------------------------------------------------------------------- fan-out


def test_restconf_and_netconf_fan_out_one_result_per_device(server: Server) -> None:
    out = event(server, "fan", devices=["r1", "insecure"])
    assert out["status"] == "succeeded", out
    rc, nc = out["results"]["fan"]["0"], out["results"]["fan"]["1"]
    for step in (rc, nc):
        assert step["count"] == 2 and sorted(step["succeeded"]) == ["insecure", "r1"]
        assert step["failed"] == []
    assert rc["devices"]["insecure"]["data"] == SYSTEM and rc["devices"]["r1"]["ok"]
    assert nc["devices"]["r1"]["data"]["system"]["hostname"] == "r1"
    names = sorted(a["name"] for a in artifacts(server, out["id"]))
    assert names == [
        "insecure-ietf_system_system.json",
        "insecure-netconf-get_config.xml",
        "r1-ietf_system_system.json",
        "r1-netconf-get_config.xml",
    ]


def test_fan_out_with_a_failing_device_fails_unless_partial_ok(server: Server) -> None:
    # Group "lab" is r1 and "untrusted" (whose certificate is not trusted: permanent).
    out = event(server, "fan", group="lab")
    assert out["status"] == "dead", out
    assert "1 of 2 devices failed" in out["error"] and "untrusted" in out["error"]
    out = event(server, "fan", group="lab", partial=True)
    assert out["status"] == "succeeded", out
    rc = out["results"]["fan"]["0"]
    assert rc["succeeded"] == ["r1"] and rc["failed"] == ["untrusted"]
    assert "not trusted" in rc["devices"]["untrusted"]["error"]
    assert rc["devices"]["untrusted"]["transient"] is False


# --------------------------------------------------------------------------- the pool, NETCONF


def _pool_device(lab: Lab, netconf_port: int, password: str) -> tuple[Any, Any]:
    from nethook.devices import inventory as inventory_mod

    inv = inventory_mod.from_dict(
        {
            "devices": {
                "nc": {
                    "host": "127.0.0.1",
                    "port": lab["r1"].port,
                    "netconf_port": netconf_port,
                    "username": USERNAME,
                    "password": password,
                }
            }
        }
    )
    return inv, inv.get("nc")


async def test_pooled_netconf_session_is_probed_before_reuse(lab: Lab, netconf_port: int) -> None:
    from nethook.config import DevicesConfig
    from nethook.devices.sessions import SessionPool

    inv, dev = _pool_device(lab, netconf_port, PASSWORD)
    # health_check_after=0: every reuse makes the probe's round trip first.
    pool = SessionPool(inv, DevicesConfig(health_check_after=0, connect_timeout=10))
    await pool.start()
    try:
        before = len(NC_SESSIONS)
        for _ in range(3):
            xml = await pool.run(
                dev, lambda m: str(m.get_config(source="running").data_xml), transport="netconf"
            )
            assert "hostname" in xml
        assert pool.stats.connects == 1 and pool.stats.reuses == 2, pool.stats
        assert pool.stats.health_failures == 0
        assert len(set(NC_SESSIONS[before:])) == 1
        assert pool.idle_count("nc", transport="netconf") == 1
    finally:
        await pool.close()
    assert pool.open_count() == 0


async def test_a_refused_login_holds_cli_and_netconf_alike(lab: Lab, netconf_port: int) -> None:
    from nethook.config import DevicesConfig
    from nethook.devices.sessions import AuthFailed, SessionPool

    inv, dev = _pool_device(lab, netconf_port, "not-the-password")
    pool = SessionPool(inv, DevicesConfig(connect_timeout=10))
    await pool.start()
    try:
        failed = lab["r1"].logins_failed
        with pytest.raises(AuthFailed):
            await pool.run(dev, lambda conn: conn.send_command("show clock"))
        assert lab["r1"].logins_failed - failed == 1
        # Same account over NETCONF: refused by the hold, no second wrong login anywhere.
        with pytest.raises(AuthFailed, match="not retrying"):
            await pool.run(dev, lambda m: m.get_config(source="running"), transport="netconf")
        assert pool.stats.auth_refusals == 1 and pool.stats.connects == 0
    finally:
        await pool.close()


async def test_per_device_lines_are_shared_by_cli_and_netconf(lab: Lab, netconf_port: int) -> None:
    from nethook.config import DevicesConfig
    from nethook.devices.sessions import SessionPool

    inv, dev = _pool_device(lab, netconf_port, PASSWORD)
    pool = SessionPool(inv, DevicesConfig(per_device=1, connect_timeout=10))
    await pool.start()
    try:
        await pool.run(dev, lambda conn: conn.send_command("show clock"))
        assert pool.idle_count("nc") == 1
        # One line: the idle CLI session gives it up for the NETCONF one, and back.
        await pool.run(dev, lambda m: m.get_config(source="running"), transport="netconf")
        assert pool.open_count() == 1 and pool.idle_count("nc", transport="netconf") == 1
        await pool.run(dev, lambda conn: conn.send_command("show clock"))
        assert pool.open_count() == 1 and pool.idle_count("nc") == 1
        assert pool.stats.evicted == 2
    finally:
        await pool.close()
