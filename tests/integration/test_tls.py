"""HTTPS and mutual TLS over real sockets (issue part 2/7).

Certificates come from ``nethook init --self-signed localhost --mtls`` (the path a user
takes); foreign client certificates from ``nethook.security.tls`` and ``trustme``. Two
servers share the module: ``mtls`` (the init config as written, bound to loopback) and
``https`` (the same server certificate, no client CA).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from conftest import NETHOOK, Server, free_port
from nethook.config import load_yaml
from nethook.security import tls as tls_mod

pytestmark = pytest.mark.integration

TOKEN = "tls-test-token-5c1e9a7d3b0f"
EVENT = {"event": "tls_check", "data": {"via": "tls"}}  # no rule matches: nothing runs
HEADERS = {"X-Webhook-Token": TOKEN}


class Files:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.server_cert = folder / "server.pem"
        self.server_key = folder / "server.key"
        self.client_ca = folder / "client-ca.pem"
        self.client_cert = folder / "client.pem"
        self.client_key = folder / "client.key"


def _context(files: Files, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(files.server_cert))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    return ctx


def _wait_ready(srv: Server, ctx: ssl.SSLContext, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.proc is not None and srv.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{srv.log()}")
        try:
            if httpx.get(f"{srv.url}/health", verify=ctx, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server not ready:\n{srv.log()}")


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, Files, str]:
    """Run ``nethook init --self-signed localhost --mtls`` as a user would."""
    workdir = tmp_path_factory.mktemp("mtls")
    port = free_port()
    config = workdir / "nethook.yml"
    proc = subprocess.run(
        [
            *NETHOOK,
            "init",
            str(config),
            "--self-signed",
            "localhost",
            "--mtls",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    files = Files(workdir / "tls")
    for path in vars(files).values():
        if path != files.folder:
            assert path.is_file(), path
    assert files.server_key.stat().st_mode & 0o077 == 0
    assert files.client_key.stat().st_mode & 0o077 == 0
    return config, port, files, proc.stdout


def _write(path: Path, cfg: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def mtls(initialised: tuple[Path, int, Files, str]) -> Iterator[Server]:
    config, port, files, _ = initialised
    cfg = load_yaml(config.read_text())  # YAML 1.2 booleans: `on:` stays a key
    assert cfg["server"]["tls"]["client_ca"] == "tls/client-ca.pem"
    cfg["server"]["host"] = "127.0.0.1"  # init binds 0.0.0.0; tests stay on loopback
    cfg["sources"]["default"]["auth"]["secret"] = TOKEN
    _write(config, cfg)
    srv = Server(config, port, config.parent, scheme="https").start(wait=False)
    try:
        _wait_ready(srv, _context(files, (files.client_cert, files.client_key)))
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def https(
    initialised: tuple[Path, int, Files, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Server-side TLS only: the init certificate, no client CA."""
    config, _, files, _ = initialised
    workdir = tmp_path_factory.mktemp("https")
    port = free_port()
    cfg = load_yaml(config.read_text())  # YAML 1.2 booleans: `on:` stays a key
    cfg["server"] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": {"certfile": str(files.server_cert), "keyfile": str(files.server_key)},
    }
    cfg["sources"]["default"]["auth"]["secret"] = TOKEN
    _write(workdir / "nethook.yml", cfg)
    srv = Server(workdir / "nethook.yml", port, workdir, scheme="https").start(wait=False)
    try:
        _wait_ready(srv, _context(files))
        yield srv
    finally:
        srv.stop()


def _files(initialised: tuple[Path, int, Files, str]) -> Files:
    return initialised[2]


def _post(srv: Server, verify: Any, **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{srv.url}/events", json=EVENT, headers=HEADERS, verify=verify, timeout=5, **kw
    )


# --------------------------------------------------------------------------- HTTPS


def test_init_prints_a_curl_line_with_the_tls_files(
    initialised: tuple[Path, int, Files, str],
) -> None:
    _, port, files, out = initialised
    text = " ".join(out.split())
    assert f"https://localhost:{port}/events" in text
    for flag, path in (
        ("--cacert", files.server_cert),
        ("--cert", files.client_cert),
        ("--key", files.client_key),
    ):
        assert f"{flag} {path}" in text, text


def test_https_with_the_self_signed_certificate(
    https: Server, initialised: tuple[Path, int, Files, str]
) -> None:
    files = _files(initialised)
    before = https.event_count()
    r = _post(https, _context(files))
    assert r.status_code == 202, r.text
    assert https.event_count() == before + 1
    # Without trusting that certificate, the handshake fails on the client side.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _post(https, True)
    assert https.event_count() == before + 1


def test_plain_http_to_the_https_port_gets_nothing(https: Server) -> None:
    before = https.event_count()
    try:
        r = httpx.post(
            f"http://127.0.0.1:{https.port}/events", json=EVENT, headers=HEADERS, timeout=5
        )
    except httpx.TransportError:
        pass
    else:
        assert not r.is_success, r.status_code
    assert https.event_count() == before


# --------------------------------------------------------------------------- mTLS


def test_mtls_accepts_a_client_certificate_from_the_client_ca(
    mtls: Server, initialised: tuple[Path, int, Files, str]
) -> None:
    files = _files(initialised)
    before = mtls.event_count()
    r = _post(mtls, _context(files, (files.client_cert, files.client_key)))
    assert r.status_code == 202, r.text
    assert mtls.event_count() == before + 1


def test_mtls_refuses_a_client_without_certificate(
    mtls: Server, initialised: tuple[Path, int, Files, str]
) -> None:
    files = _files(initialised)
    before = mtls.event_count()
    with pytest.raises(httpx.TransportError):
        _post(mtls, _context(files))
    assert mtls.event_count() == before


@pytest.fixture(params=["nethook", "trustme"])
def foreign_client(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate from a CA the server does not trust."""
    if request.param == "nethook":
        ca = tls_mod.make_ca("someone else's CA")
        key, cert = tls_mod.write_pem(tmp_path, "foreign", tls_mod.client_cert(ca, "intruder"))
        return cert, key
    leaf = trustme.CA().issue_cert("intruder@example.com", common_name="intruder")
    cert, key = tmp_path / "trustme.pem", tmp_path / "trustme.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def test_mtls_refuses_a_client_certificate_from_a_foreign_ca(
    mtls: Server, initialised: tuple[Path, int, Files, str], foreign_client: tuple[Path, Path]
) -> None:
    files = _files(initialised)
    before = mtls.event_count()
    with pytest.raises(httpx.TransportError):
        _post(mtls, _context(files, foreign_client))
    assert mtls.event_count() == before


def test_mtls_refuses_the_server_certificate_used_as_a_client_certificate(
    mtls: Server, initialised: tuple[Path, int, Files, str]
) -> None:
    files = _files(initialised)
    with pytest.raises(httpx.TransportError):
        _post(mtls, _context(files, (files.server_cert, files.server_key)))


def test_plain_http_to_the_mtls_port_gets_nothing(mtls: Server) -> None:
    before = mtls.event_count()
    try:
        r = httpx.post(
            f"http://127.0.0.1:{mtls.port}/events", json=EVENT, headers=HEADERS, timeout=5
        )
    except httpx.TransportError:
        pass
    else:
        assert not r.is_success, r.status_code
    assert mtls.event_count() == before


def _curl(srv: Server, *tls_args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "/usr/bin/curl",
            "-sS",
            "--max-time",
            "10",
            *tls_args,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            f"{srv.url}/events",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"X-Webhook-Token: {TOKEN}",
            "-d",
            json.dumps(EVENT),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_curl_with_cacert_cert_and_key_gets_202(
    mtls: Server, initialised: tuple[Path, int, Files, str]
) -> None:
    files = _files(initialised)
    before = mtls.event_count()
    proc = _curl(
        mtls,
        "--cacert",
        str(files.server_cert),
        "--cert",
        str(files.client_cert),
        "--key",
        str(files.client_key),
    )
    assert proc.returncode == 0, proc.stderr
    body, _, status = proc.stdout.rpartition("\n")
    assert status == "202", proc.stdout
    assert json.loads(body)["status"] == "queued"
    assert mtls.event_count() == before + 1
    # The same call without the client certificate does not get through.
    refused = _curl(mtls, "--cacert", str(files.server_cert))
    assert refused.returncode != 0, refused.stdout
    assert not refused.stdout.rstrip().endswith(("200", "202"))
    assert mtls.event_count() == before + 1
