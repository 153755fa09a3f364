"""The servers the benchmark drives, and how to start, check and stop them.

A :class:`Target` says how to launch a server on a given port in a scratch directory and
which request wrk should repeat.  :class:`Server` runs it as a child process.  To add a
variant (a PostgreSQL store, ...), subclass :class:`NethookTarget` (override
:meth:`~NethookTarget.config_yaml` and :meth:`~NethookTarget.request`), name the anchors it
is compared with in ``anchors`` and append an instance to :data:`TARGETS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from _wrk import HttpRequest

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

#: The same payload for every target.
BODY = (
    b'{"event":"bench","timestamp":"2026-11-30T10:00:00Z","source":"bench",'
    b'"data":{"device":"r1","interface":"Gi2","state":"down"}}'
)
JSON_CT = {"Content-Type": "application/json"}
#: The HMAC key shared by the ``webhook`` anchors and ``nethook-github``.
HMAC_SECRET = "bench-hmac-secret-0123456789abcdef"


def signed_request(path: str, *, good: bool) -> HttpRequest:
    """``BODY`` with GitHub's ``X-Hub-Signature-256`` (a wrong one if not ``good``).

    No ``X-GitHub-Delivery``: nethook dedupes on it, so a fixed one would turn every request
    after the first into a duplicate.
    """
    digest = hmac.new(HMAC_SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    sig = "sha256=" + (digest if good else "0" * 64)
    return HttpRequest("POST", path, {**JSON_CT, "X-Hub-Signature-256": sig}, BODY)


def check_cert_support() -> None:
    """Raise :class:`TargetUnavailable` if :func:`write_cert` cannot work here."""
    try:
        import cryptography  # noqa: F401

        from nethook.security import tls  # noqa: F401
    except ImportError as exc:
        raise TargetUnavailable(f"cannot make a certificate: {exc}") from None


def write_cert(workdir: Path) -> tuple[Path, Path]:
    """A fresh self-signed cert for 127.0.0.1 in ``workdir``: ``(keyfile, certfile)``."""
    from nethook.security.tls import self_signed, write_pem

    key, cert = write_pem(workdir, "bench-tls", self_signed("127.0.0.1"))
    return Path(key), Path(cert)


class TargetUnavailable(Exception):
    """The target cannot be run on this machine (yet); skip it."""


class TargetFailed(Exception):
    """The target was started but did not serve correctly."""


@dataclass(frozen=True)
class Launch:
    """One concrete way to run a target: command line, readiness probe, requests."""

    argv: list[str]
    request: HttpRequest  # what wrk repeats; must get `expected_status`
    expected_status: int
    ready_path: str = "/"
    ready_status: int | None = None  # None: any HTTP answer means ready
    bad_request: HttpRequest | None = None  # must NOT get a 2xx (auth is really checked)
    cwd: Path = REPO
    env: dict[str, str] | None = None
    scheme: str = "http"


class Target(ABC):
    name: str
    description: str
    #: Anchors are the reference points; other targets are reported as ratios to them.
    anchor: bool = False
    #: For a non-anchor: the anchors it is compared with (``name/anchor`` req/s).
    anchors: tuple[str, ...] = ()

    def check_available(self) -> None:
        """Raise :class:`TargetUnavailable` with a reason if this target cannot run."""
        return None

    @abstractmethod
    def prepare(self, workdir: Path, port: int) -> Launch:
        """Write whatever config the target needs into ``workdir``; say how to run it."""

    def stored_events(self, workdir: Path) -> int | None:
        """After the server stopped: how many events it persisted (None: not applicable)."""
        return None


# --------------------------------------------------------------------------- anchors


class BareTarget(Target):
    name = "bare"
    description = "bare FastAPI route under uvicorn (framework ceiling)"
    anchor = True

    def prepare(self, workdir: Path, port: int) -> Launch:
        argv = [sys.executable, "-m", "uvicorn", "bench.bare_app:app"]
        argv += ["--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning"]
        req = HttpRequest("POST", "/events", JSON_CT, BODY)
        return Launch(argv=argv, request=req, expected_status=202)


class BareTlsTarget(BareTarget):
    """The bare anchor behind uvicorn's own TLS, as nethook's ``server.tls`` does it."""

    name = "bare-tls"
    description = "bare FastAPI route under uvicorn with TLS (self-signed)"

    def check_available(self) -> None:
        check_cert_support()

    def prepare(self, workdir: Path, port: int) -> Launch:
        key, cert = write_cert(workdir)
        launch = super().prepare(workdir, port)
        argv = [*launch.argv, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        return replace(launch, argv=argv, scheme="https")


class WebhookTarget(Target):
    """adnanh/webhook, HMAC-SHA256 checked, running /bin/true per accepted request."""

    name = "webhook"
    description = "adnanh/webhook, payload-hmac-sha256 rule, runs /bin/true"
    anchor = True
    binary = "/usr/bin/webhook"

    def check_available(self) -> None:
        if not os.access(self.binary, os.X_OK):
            raise TargetUnavailable(f"{self.binary} missing (scripts/install-bench-deps.sh)")

    def tls_args(self, workdir: Path) -> list[str]:
        return []

    def prepare(self, workdir: Path, port: int) -> Launch:
        rule = {
            "match": {
                "type": "payload-hmac-sha256",
                "secret": HMAC_SECRET,
                "parameter": {"source": "header", "name": "X-Hub-Signature-256"},
            }
        }
        hook = {
            "id": "bench",
            "execute-command": "/bin/true",
            "command-working-directory": str(workdir),
            "http-methods": ["POST"],
            "response-message": "queued",
            # 2.8.0 answers 200 "Hook rules were not satisfied." unless told otherwise.
            "trigger-rule-mismatch-http-response-code": 403,
            "trigger-rule": rule,
        }
        hooks = workdir / "hooks.json"
        hooks.write_text(json.dumps([hook], indent=2), encoding="utf-8")
        tls = self.tls_args(workdir)
        argv = [self.binary, "-hooks", str(hooks), "-ip", HOST, "-port", str(port), "-nopanic"]
        argv += tls
        return Launch(
            argv=argv,
            request=signed_request("/hooks/bench", good=True),
            expected_status=200,
            ready_path="/",
            ready_status=200,
            bad_request=signed_request("/hooks/bench", good=False),
            cwd=workdir,
            scheme="https" if tls else "http",
        )


class WebhookTlsTarget(WebhookTarget):
    """adnanh/webhook serving HTTPS itself (``-secure -cert -key``, Go's crypto/tls)."""

    name = "webhook-tls"
    description = "adnanh/webhook with -secure (self-signed), same rule and command"

    def check_available(self) -> None:
        super().check_available()
        check_cert_support()

    def tls_args(self, workdir: Path) -> list[str]:
        key, cert = write_cert(workdir)
        return ["-secure", "-cert", str(cert), "-key", str(key)]


# --------------------------------------------------------------------------- nethook

NETHOOK_TOKEN = "bench-token-0123456789abcdef"

_NETHOOK_YAML = """\
server: {host: 127.0.0.1, port: @PORT@@TLS@}
store: {url: "sqlite:///@TMPDIR@/bench.db", data_dir: "@TMPDIR@/data"}
logging: {level: WARNING}
# One client address sends everything here; a per-client limit would measure 429s.
security: {rate_limit: {enabled: false}}
sources:
  @SOURCE@
rules:
  - name: noop
    on: {type: bench}
    do: [{log: {message: "bench {{ event.id }}", level: debug}}]
"""


class NethookTarget(Target):
    """The real service: ``nethook serve --config FILE`` with a SQLite store in ``workdir``.

    Subclasses change :meth:`source_yaml` and :meth:`request` (auth) or set ``tls``.
    """

    name = "nethook"
    description = "nethook serve, token auth, SQLite store, one no-op rule"
    anchors: tuple[str, ...] = ("bare",)
    tls = False

    @property
    def binary(self) -> Path:
        return Path(sys.prefix) / "bin" / "nethook"

    def check_available(self) -> None:
        if not self.binary.exists():
            raise TargetUnavailable(f"{self.binary} does not exist (yet)")
        try:
            proc = subprocess.run(
                [str(self.binary), "--help"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetUnavailable(f"{self.binary} --help: {exc}") from None
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:]
            raise TargetUnavailable(f"{self.binary} --help exited {proc.returncode}: {tail}")
        if self.tls:
            check_cert_support()

    def source_yaml(self) -> str:
        """The one entry under ``sources:``."""
        secret = json.dumps(NETHOOK_TOKEN)
        return f"default: {{auth: {{type: token, header: X-Webhook-Token, secret: {secret}}}}}"

    def config_yaml(self, workdir: Path, port: int) -> str:
        tls = ""
        if self.tls:
            key, cert = write_cert(workdir)
            tls = f", tls: {{certfile: {json.dumps(str(cert))}, keyfile: {json.dumps(str(key))}}}"
        return (
            _NETHOOK_YAML.replace("@PORT@", str(port))
            .replace("@TLS@", tls)
            .replace("@TMPDIR@", str(workdir))
            .replace("@SOURCE@", self.source_yaml())
        )

    def request(self, good: bool) -> HttpRequest:
        token = NETHOOK_TOKEN if good else "wrong-" + NETHOOK_TOKEN
        return HttpRequest("POST", "/events", {**JSON_CT, "X-Webhook-Token": token}, BODY)

    def prepare(self, workdir: Path, port: int) -> Launch:
        config = workdir / "nethook.yaml"
        config.write_text(self.config_yaml(workdir, port), encoding="utf-8")
        return Launch(
            argv=[str(self.binary), "serve", "--config", str(config)],
            request=self.request(good=True),
            # 202 = stored; a duplicate delivery would get 200 and count as unexpected.
            expected_status=202,
            ready_path="/health",
            ready_status=200,
            bad_request=self.request(good=False),
            cwd=workdir,
            scheme="https" if self.tls else "http",
        )

    def stored_events(self, workdir: Path) -> int | None:
        db = workdir / "bench.db"
        if not db.exists():
            raise FileNotFoundError(f"{db} was not created")
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(count)


class NethookGithubTarget(NethookTarget):
    """A ``github`` source: the same body and signature the ``webhook`` anchor verifies."""

    name = "nethook-github"
    description = "nethook serve, github source (X-Hub-Signature-256), SQLite store"
    anchors = ("webhook", "bare")

    def source_yaml(self) -> str:
        return f"github: {{auth: {{type: github, secret: {json.dumps(HMAC_SECRET)}}}}}"

    def request(self, good: bool) -> HttpRequest:
        return signed_request("/hooks/github", good=good)


class NethookTlsTarget(NethookTarget):
    """nethook with ``server.tls`` (uvicorn's TLS), token auth on ``/events``."""

    name = "nethook-tls"
    description = "nethook serve with server.tls (self-signed), token auth, SQLite store"
    anchors = ("bare-tls", "webhook-tls")
    tls = True


class NethookSplitTarget(NethookTarget):
    """Ingest and dispatch in two processes (``serve --no-workers`` + ``nethook worker``).

    The in-process dispatcher shares ingest's core (one Python process, one GIL); split,
    ingest gets a core of its own. The durability check still applies; the worker may
    still be draining the queue when the run ends (the queue is the buffer).
    """

    name = "nethook-split"
    description = "nethook serve --no-workers + nethook worker (two processes), SQLite"
    anchors = ("bare",)

    def prepare(self, workdir: Path, port: int) -> Launch:
        launch = super().prepare(workdir, port)
        split = [
            sys.executable,
            str(Path(__file__).parent / "_split.py"),
            str(self.binary),
            launch.argv[-1],
        ]
        return dataclasses.replace(launch, argv=split)


#: Every target, in the order they run.  Extend here.  Each variant runs right after the
#: anchors it is compared with, so slow drift in a shared machine's load hurts less.
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        BareTarget(),
        NethookTarget(),
        NethookSplitTarget(),
        WebhookTarget(),
        NethookGithubTarget(),
        BareTlsTarget(),
        WebhookTlsTarget(),
        NethookTlsTarget(),
    )
}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """A target's server process: output goes to files in the scratch directory."""

    def __init__(self, launch: Launch, port: int, workdir: Path) -> None:
        self.launch = launch
        self.port = port
        self.base_url = f"{launch.scheme}://{HOST}:{port}"
        self._out = workdir / "server.stdout"
        self._err = workdir / "server.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.proc = subprocess.Popen(
                self.launch.argv,
                cwd=self.launch.cwd,
                env=self.launch.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a terminal ^C reaches us, not the server directly
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        url = self.base_url + self.launch.ready_path
        last = "no answer"
        with httpx.Client(timeout=2.0, verify=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise TargetFailed(f"exited {self.proc.returncode} before it was ready")
                try:
                    resp = client.get(url)
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                else:
                    want = self.launch.ready_status
                    if want is None or resp.status_code == want:
                        return
                    last = f"GET {self.launch.ready_path} -> {resp.status_code}"
                time.sleep(0.1)
        raise TargetFailed(f"not ready after {timeout:.0f}s ({last})")

    def check(self) -> int:
        """Send the benchmark request once (and the bad one); return how many got 2xx."""
        launch = self.launch
        with httpx.Client(base_url=self.base_url, timeout=10.0, verify=False) as client:
            good = _send(client, launch.request)
            if good.status_code != launch.expected_status:
                raise TargetFailed(
                    f"check request got {good.status_code} (want {launch.expected_status}): "
                    f"{good.text[:300]!r}"
                )
            if launch.bad_request is not None:
                bad = _send(client, launch.bad_request)
                if bad.is_success:
                    raise TargetFailed(f"request with wrong credentials got {bad.status_code}")
        return 1

    def cpu_seconds(self) -> float:
        """User+system CPU of the server and its reaped children, from /proc/PID/stat."""
        assert self.proc is not None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # After "pid (comm)": fields[11..14] are utime, stime, cutime, cstime in clock ticks.
        ticks = sum(int(f) for f in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the process group we created.  Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self._err.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def _send(client: httpx.Client, req: HttpRequest) -> httpx.Response:
    try:
        return client.request(req.method, req.path, headers=req.headers, content=req.body)
    except httpx.HTTPError as exc:
        raise TargetFailed(f"check request {req.method} {req.path}: {exc!r}") from None
