"""``netconf.get`` and ``netconf.get_config``: NETCONF over SSH (port 830) with ncclient.

Targets are those of the CLI actions (``device``, ``devices``, ``group``, ``tag``; see
:mod:`nethook.actions.device`): several devices are queried concurrently, one result each.
A ``filter`` is a subtree filter (XML); ``xpath`` (with optional ``namespaces``) an XPath
filter, for servers with the ``:xpath`` capability. The reply's ``<data>`` is kept raw as
an XML artifact and parsed with xmltodict into the step output with every namespace
stripped, so rules read ``data.system.hostname`` whatever prefix the device used.

Sessions come from the device session pool (transport ``netconf``): kept warm between
events, health-checked, replaced once when dead, under the same per-device and global caps
as CLI sessions. ncclient is blocking: it runs on the pool's threads.
"""

from __future__ import annotations

import collections
from typing import Any, Literal

from pydantic import Field, model_validator

from ..devices.inventory import Device
from ..exceptions import PermanentError
from .base import Action, ActionContext, ActionResult, ArtifactData
from .device import MAX_OUTPUT_TEXT, DeviceOutcome, TargetOptions, pool_of, run_targets


class NetconfOptions(TargetOptions):
    #: Subtree filter: an XML element (or several) naming what to return.
    filter: str | None = None
    #: XPath filter (needs the server's :xpath capability).
    xpath: str | None = None
    #: Prefix -> namespace for ``xpath``.
    namespaces: dict[str, str] = {}
    timeout: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _one_filter(self) -> NetconfOptions:
        if self.filter is not None and self.xpath is not None:
            raise ValueError("give either 'filter' (subtree) or 'xpath', not both")
        return self

    def ncclient_filter(self) -> Any:
        if self.filter is not None:
            return ("subtree", self.filter)
        if self.xpath is not None:
            return ("xpath", (self.namespaces, self.xpath) if self.namespaces else self.xpath)
        return None


class NetconfGetConfigOptions(NetconfOptions):
    source: Literal["running", "candidate", "startup"] = "running"


def strip_namespaces(xml: str) -> Any:
    """xmltodict of ``xml`` with namespaces removed from every element and attribute name."""
    import xmltodict

    # A mapping that answers None for every namespace URI makes xmltodict drop it.
    no_ns: collections.defaultdict[str, None] = collections.defaultdict(lambda: None)

    def drop_xmlns(_path: Any, key: str, value: Any) -> tuple[str, Any] | None:
        return None if key == "@xmlns" or key.startswith("@xmlns:") else (key, value)

    return xmltodict.parse(xml, process_namespaces=True, namespaces=no_ns, postprocessor=drop_xmlns)


def _retrieve(m: Any, dev: Device, op: str, opts: NetconfOptions, source: str | None) -> str:
    """One retrieval on an open session (blocking; runs in a pool thread)."""
    from ncclient.operations.rpc import RPCError

    m.timeout = opts.timeout
    flt = opts.ncclient_filter()
    try:
        reply = m.get_config(source=source, filter=flt) if op == "get_config" else m.get(flt)
    except RPCError as exc:
        # The server answered: the request is wrong (bad filter, no such datastore).
        raise PermanentError(
            f"{dev.name} ({dev.host}:{dev.netconf_port}): NETCONF error: {exc}"
        ) from exc
    return str(reply.data_xml)


class _NetconfAction(Action):
    op = "get"

    async def run(self, ctx: ActionContext, opts: Any) -> ActionResult:
        pool = pool_of(ctx)
        source = getattr(opts, "source", None)

        async def work(dev: Device) -> DeviceOutcome:
            xml: str = await pool.run(
                dev, lambda m: _retrieve(m, dev, self.op, opts, source), transport="netconf"
            )
            return _outcome(dev, self.op, source, xml)

        return await run_targets(ctx, opts, work)


def _outcome(dev: Device, op: str, source: str | None, xml: str) -> DeviceOutcome:
    artifact = ArtifactData(
        name=f"{dev.name}-netconf-{op}.xml",
        content=xml.encode(),
        content_type="application/xml",
    )
    output: dict[str, Any] = {"device": dev.name, "operation": op, "bytes": len(xml)}
    if source is not None:
        output["source"] = source
    parsed = strip_namespaces(xml)
    data = parsed.get("data") if isinstance(parsed, dict) else parsed
    if len(xml) <= MAX_OUTPUT_TEXT:
        output["data"] = data
    else:
        output["truncated"] = True  # the artifact has it all
        output["keys"] = list(data) if isinstance(data, dict) else None
    return DeviceOutcome(output, [artifact])


class NetconfGetAction(_NetconfAction):
    """``<get>``: state and config data."""

    name = "netconf.get"
    Options = NetconfOptions
    op = "get"


class NetconfGetConfigAction(_NetconfAction):
    """``<get-config>``: config data from a datastore (``source``, default running)."""

    name = "netconf.get_config"
    Options = NetconfGetConfigOptions
    op = "get_config"
