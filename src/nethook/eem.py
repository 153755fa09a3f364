"""``nethook eem render``: configuration that makes an IOS-XE device report to nethook.

IOS and IOS-XE applets cannot send HTTP themselves (there is no ``action ... http``), so
three real paths are rendered:

* (a) ``syslog``: ``logging host ... transport udp|tcp port ...`` towards nethook's syslog
  listener (a ``type: syslog`` source);
* (b) ``applet``: an EEM applet on syslog patterns that runs a guestshell Python script,
  and ``script``: that script, which POSTs the message as JSON with the token header to
  nethook over HTTPS (Python 3 standard library only);
* (c) ``tcl``: an EEM Tcl policy doing the same over plain HTTP (IOS Tcl has no TLS).

Rendering is pure (:func:`render`): templates are package data under ``eem_templates/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import jinja2
import typer

from .exceptions import ConfigError

VARIANTS = ("syslog", "applet", "script", "tcl")
DEFAULT_PATTERNS = (
    "%LINK-3-UPDOWN",
    "%LINEPROTO-5-UPDOWN",
    "%BGP-5-ADJCHANGE",
    "%OSPF-5-ADJCHG",
    "%SYS-5-CONFIG_I",
)
TOKEN_PLACEHOLDER = "PASTE-THE-SOURCE-TOKEN-HERE"
SCRIPT_PATH = "/bootflash/guest-share/nethook_eem.py"
TOKEN_FILE = "/bootflash/guest-share/nethook.token"
TRAP_LEVELS = (
    "emergencies",
    "alerts",
    "critical",
    "errors",
    "warnings",
    "notifications",
    "informational",
    "debugging",
)
# IOS names: interfaces, VRFs, EEM variables and applet names. Nothing that could end a
# quoted string or start a new command line.
_IOS_WORD = re.compile(r"[A-Za-z0-9_./:-]{1,64}")
_EEM_VARIABLE = re.compile(r"_?[A-Za-z][A-Za-z0-9_]{0,63}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True)
class EemOptions:
    """Everything a rendering depends on (the CLI's options)."""

    url: str
    token_var: str = "_nethook_token"
    token: str | None = None
    header: str = "X-Webhook-Token"
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    source_interface: str | None = None
    vrf: str | None = None
    syslog_host: str | None = None
    syslog_port: int = 5514
    transport: str = "udp"
    trap_level: str = "informational"
    applet_name: str = "nethook"
    script_path: str = SCRIPT_PATH
    token_file: str = TOKEN_FILE
    ca_file: str | None = None
    verify_tls: bool = True
    tcl_url: str | None = None
    warnings: list[str] = field(default_factory=list, compare=False)

    def check(self) -> None:
        """ConfigError listing every option that would render broken configuration."""
        errors: list[str] = []
        url = urlsplit(self.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            errors.append(f"--url: {self.url!r} is not an http(s) URL")
        if self.tcl_url is not None:
            tcl = urlsplit(self.tcl_url)
            if tcl.scheme != "http" or not tcl.hostname:
                errors.append("--tcl-url: must be http://HOST[:PORT]/PATH (IOS Tcl has no TLS)")
        if not _EEM_VARIABLE.fullmatch(self.token_var):
            errors.append(f"--token-var: {self.token_var!r} is not an EEM variable name")
        if self.token is not None and not re.fullmatch(r"[\x21-\x7e]{1,256}", self.token):
            errors.append("--token: printable characters without spaces only")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.header):
            errors.append(f"--header: {self.header!r} is not an HTTP header name")
        if not self.patterns:
            errors.append("--pattern: at least one syslog pattern is needed")
        for pattern in self.patterns:
            # Patterns sit inside "..." in the applet and on an environment line: a quote
            # or a control character would end them early.
            if not _PRINTABLE.fullmatch(pattern) or '"' in pattern or len(pattern) > 200:
                errors.append(f"--pattern: {pattern!r}: printable, no double quotes, <= 200")
        for name, value in (("--source-interface", self.source_interface), ("--vrf", self.vrf)):
            if value is not None and not _IOS_WORD.fullmatch(value):
                errors.append(f"{name}: {value!r} is not an IOS name")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,31}", self.applet_name):
            errors.append(f"--name: {self.applet_name!r}: letters, digits, '-', '_'")
        if self.transport not in ("udp", "tcp"):
            errors.append("--transport: udp or tcp")
        if not 1 <= self.syslog_port <= 65535:
            errors.append("--syslog-port: 1-65535")
        if self.trap_level not in TRAP_LEVELS:
            errors.append(f"--trap-level: one of {', '.join(TRAP_LEVELS)}")
        for name, path in (("--script-path", self.script_path), ("--ca-file", self.ca_file)):
            if path is not None and not re.fullmatch(r"/[A-Za-z0-9_./-]{1,200}", path):
                errors.append(f"{name}: an absolute guestshell path (/bootflash/...)")
        if self.syslog_host is not None and not _IOS_WORD.fullmatch(self.syslog_host):
            errors.append(f"--syslog-host: {self.syslog_host!r} is not a host name or address")
        if errors:
            raise ConfigError(errors)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        autoescape=False,  # IOS config, Python and Tcl, not HTML; values are checked instead
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["py"] = repr  # a Python literal
    env.filters["tcl"] = _tcl_word
    return env


def _template_source(name: str) -> str:
    return resources.files(__package__).joinpath("eem_templates", name).read_text("utf-8")


def _tcl_word(value: Any) -> str:
    """A Tcl word that is exactly ``value``: braces, unless that would change the text."""
    text = "" if value is None else str(value)
    if re.fullmatch(r"[A-Za-z0-9_./:%|-]*", text):
        return "{" + text + "}"
    return '"' + re.sub(r'([\\"$\[\]{}])', r"\\\1", text) + '"'


def _applets(opts: EemOptions) -> list[dict[str, str]]:
    out, used = [], set()
    for i, pattern in enumerate(opts.patterns, 1):
        word = re.sub(r"[^A-Za-z0-9_-]", "", pattern)[:24] or str(i)
        name = f"{opts.applet_name}-{word}"
        if name in used:
            name = f"{name}-{i}"
        used.add(name)
        out.append({"name": name, "pattern": pattern})
    return out


def _context(opts: EemOptions) -> dict[str, Any]:
    url = urlsplit(opts.url)
    tcl = urlsplit(opts.tcl_url or opts.url)
    if tcl.scheme != "http":
        opts.warnings.append(
            "variant (c) posts plain HTTP (IOS Tcl has no TLS) but the URL is https: "
            "pass --tcl-url http://HOST:PORT/PATH for a plain-HTTP nethook on the management "
            "network, or use the guestshell variant"
        )
    return {
        "url": opts.url,
        "header": opts.header,
        "token_var": opts.token_var,
        "token": opts.token or TOKEN_PLACEHOLDER,
        "applets": _applets(opts),
        "source_interface": opts.source_interface,
        "vrf": opts.vrf,
        "syslog_host": opts.syslog_host or url.hostname,
        "syslog_port": opts.syslog_port,
        "transport": opts.transport,
        "trap_level": opts.trap_level,
        "script_path": opts.script_path,
        "token_file": opts.token_file,
        "ca_file": opts.ca_file,
        "verify_tls": opts.verify_tls,
        "tcl_url": opts.tcl_url or opts.url,
        "tcl_host": tcl.hostname,
        "tcl_port": tcl.port or (443 if tcl.scheme == "https" else 80),
        "tcl_path": (tcl.path or "/") + (f"?{tcl.query}" if tcl.query else ""),
        "tcl_pattern": "|".join(opts.patterns),
    }


def render_parts(opts: EemOptions, variants: tuple[str, ...] = VARIANTS) -> dict[str, str]:
    """Each requested variant's text, by name (``syslog``, ``applet``, ``script``, ``tcl``)."""
    opts.check()
    env = _env()
    ctx = _context(opts)
    files = {
        "syslog": "syslog.ios.j2",
        "applet": "applet.ios.j2",
        "script": "guestshell.py.j2",
        "tcl": "policy.tcl.j2",
    }
    return {v: env.get_template(files[v]).render(ctx) for v in VARIANTS if v in variants}


# What the parts are called when written to files, and their headings on stdout.
FILE_NAMES = {
    "syslog": "nethook-syslog.ios",
    "applet": "nethook-applet.ios",
    "script": "nethook_eem.py",
    "tcl": "nethook_eem.tcl",
}
_HEADINGS = {
    "syslog": "(a) syslog to nethook: paste into configuration mode",
    "applet": "(b) EEM applet: paste into configuration mode",
    "script": "(b) guestshell script: save as bootflash:guest-share/nethook_eem.py",
    "tcl": "(c) EEM Tcl policy: save as bootflash:nethook/nethook_eem.tcl",
}


def render(opts: EemOptions, variants: tuple[str, ...] = VARIANTS) -> str:
    """All requested variants as one printable text, each under a heading."""
    parts = render_parts(opts, variants)
    out = []
    for name, text in parts.items():
        rule = "#" if name in ("script", "tcl") else "!"
        out.append(f"{rule}{rule * 3} {_HEADINGS[name]} {rule * 3}\n{text.rstrip()}\n")
    return "\n".join(out)


# --------------------------------------------------------------------------- CLI

eem_app = typer.Typer(
    help="Configuration that makes IOS-XE devices report to nethook (syslog, EEM).",
    no_args_is_help=True,
)


@eem_app.command("render")
def render_command(
    url: Annotated[
        str,
        typer.Option(
            envvar="NETHOOK_EEM_URL",
            help="nethook URL the device posts to, e.g. https://nethook.example:8443/hooks/eem",
        ),
    ],
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", "-v", help="syslog, applet, script, tcl (repeat; default: all)"),
    ] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option("--pattern", "-p", help="Syslog pattern to act on (repeat)."),
    ] = None,
    token_var: Annotated[
        str, typer.Option(help="EEM environment variable that holds the token.")
    ] = "_nethook_token",
    token: Annotated[
        str | None,
        typer.Option(help="Token to put in the environment line (default: a placeholder)."),
    ] = None,
    header: Annotated[str, typer.Option(help="Token header of the nethook source.")] = (
        "X-Webhook-Token"
    ),
    source_interface: Annotated[
        str | None, typer.Option(help="Interface the device sends from (logging, Tcl).")
    ] = None,
    vrf: Annotated[str | None, typer.Option(help="VRF towards nethook, e.g. Mgmt-vrf.")] = None,
    syslog_host: Annotated[
        str | None, typer.Option(help="nethook's address for syslog (default: the URL's host).")
    ] = None,
    syslog_port: Annotated[int, typer.Option(help="nethook's syslog port.")] = 5514,
    transport: Annotated[str, typer.Option(help="Syslog transport: udp or tcp.")] = "udp",
    trap_level: Annotated[str, typer.Option(help="Lowest severity sent by syslog.")] = (
        "informational"
    ),
    name: Annotated[str, typer.Option("--name", help="Applet name prefix.")] = "nethook",
    ca_file: Annotated[
        str | None,
        typer.Option(help="CA bundle in the guestshell for nethook's certificate."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify nethook's certificate (labs).")
    ] = False,
    tcl_url: Annotated[
        str | None, typer.Option(help="Plain-HTTP URL for the Tcl variant (default: --url).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Also write each variant to a file in this folder."),
    ] = None,
) -> None:
    """Print (a) syslog config, (b) an EEM applet and its guestshell script, (c) a Tcl policy."""
    chosen = tuple(variant or VARIANTS)
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        typer.echo(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}", err=True)
        raise typer.Exit(2)
    opts = EemOptions(
        url=url,
        token_var=token_var,
        token=token,
        header=header,
        patterns=tuple(pattern or DEFAULT_PATTERNS),
        source_interface=source_interface,
        vrf=vrf,
        syslog_host=syslog_host,
        syslog_port=syslog_port,
        transport=transport,
        trap_level=trap_level,
        applet_name=name,
        ca_file=ca_file,
        verify_tls=not insecure,
        tcl_url=tcl_url,
    )
    try:
        text = render(opts, chosen)
        parts = render_parts(opts, chosen) if out_dir is not None else {}
    except ConfigError as exc:
        for line in exc.errors:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    typer.echo(text, nl=False)
    if "tcl" in chosen:
        for warning in dict.fromkeys(opts.warnings):
            typer.echo(f"warning: {warning}", err=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for part, content in parts.items():
            path = out_dir / FILE_NAMES[part]
            path.write_text(content, encoding="utf-8")
            if part == "script":
                path.chmod(0o755)
            typer.echo(f"wrote {path}", err=True)
