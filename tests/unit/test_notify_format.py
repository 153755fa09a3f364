"""notify: message formats, option checks, signing and the SSRF address rules (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook

from nethook.actions.notify import (
    ADAPTIVE_CARD,
    WEBEX_MESSAGES_URL,
    NotifyOptions,
    format_slack,
    format_teams,
    format_webex,
    message_id,
    prepare,
    redact,
)
from nethook.config import NotifyConfig
from nethook.security.ssrf import SSRFRefused, check_address, check_url

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def opts(**kw: Any) -> NotifyOptions:
    return NotifyOptions.model_validate(kw)


# --------------------------------------------------------------------------- formats


def test_webex_text_markdown_and_room() -> None:
    assert format_webex(text="hi") == {"text": "hi"}
    assert format_webex(markdown="**hi**") == {"markdown": "**hi**"}
    assert format_webex(markdown="m", room_id="R1") == {"roomId": "R1", "markdown": "m"}


def test_slack_text_and_blocks() -> None:
    assert format_slack("down") == {"text": "down"}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*down*"}}]
    assert format_slack("down", blocks) == {"text": "down", "blocks": blocks}


def test_teams_adaptive_card_envelope() -> None:
    msg = format_teams("Gi2 is down", title="Link down", facts={"device": "r1", "count": 3})
    assert msg["type"] == "message"
    [att] = msg["attachments"]
    assert att["contentType"] == ADAPTIVE_CARD == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"].startswith("http://adaptivecards.io/schemas/")
    title, text, facts = card["body"]
    assert title == {
        "type": "TextBlock",
        "text": "Link down",
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
    }
    assert text == {"type": "TextBlock", "text": "Gi2 is down", "wrap": True}
    assert facts == {
        "type": "FactSet",
        "facts": [{"title": "device", "value": "r1"}, {"title": "count", "value": "3"}],
    }
    # Without a title or facts: one TextBlock.
    assert format_teams("x")["attachments"][0]["content"]["body"] == [
        {"type": "TextBlock", "text": "x", "wrap": True}
    ]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"target": "webex", "url": "https://x/", "text": "a", "markdown": "b"}, "exactly one"),
        ({"target": "webex", "text": "a"}, "'url'"),
        ({"target": "webex", "room_id": "R", "text": "a"}, "needs 'token'"),
        ({"target": "slack", "text": "a"}, "'url' is required"),
        ({"target": "slack", "url": "https://x/"}, "give 'text'"),
        ({"target": "teams", "url": "https://x/"}, "'text' is required"),
        ({"target": "teams", "url": "https://x/", "text": "a", "blocks": []}, "does not use"),
        ({"url": "https://x/"}, "give 'body'"),
        ({"url": "https://x/", "body": {}, "secret": "plain"}, "whsec_"),
        ({"url": "https://x/", "body": {}, "bogus": 1}, "bogus"),
    ],
)
def test_bad_options_are_refused_with_a_reason(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        opts(**kw)
    assert fragment in str(info.value)


def test_prepare_webex_messages_api_with_token() -> None:
    o = opts(target="webex", room_id="ROOM", token="tok", markdown="**r1** down")
    req = prepare(o, NotifyConfig(), "msg_1")
    assert req.url == WEBEX_MESSAGES_URL
    assert req.headers["Authorization"] == "Bearer tok"
    assert req.body == b'{"roomId":"ROOM","markdown":"**r1** down"}'


def test_prepare_generic_signs_the_exact_body() -> None:
    o = opts(url="https://hooks.example.com/in", body={"device": "r1", "n": 1})
    cfg = NotifyConfig(secret=SecretStr(SECRET))
    req = prepare(o, cfg, "msg_abc", now=1_700_000_000)
    assert req.headers["webhook-id"] == "msg_abc"
    assert req.headers["webhook-timestamp"] == "1700000000"
    # Webhook.verify() would refuse this old timestamp; the package's own sign() at the
    # same id and time must give the same signature (integration tests use verify()).
    sig = Webhook(SECRET).sign("msg_abc", _dt(1_700_000_000), req.body.decode())
    assert req.headers["webhook-signature"] == sig


def test_generic_per_action_secret_wins_and_unsigned_without_secret() -> None:
    other = "whsec_" + base64.b64encode(b"another-key-another-key!").decode()
    o = opts(url="https://h.example/", body={}, secret=other)
    req = prepare(o, NotifyConfig(secret=SecretStr(SECRET)), "msg_1", now=1)
    assert req.headers["webhook-signature"] == Webhook(other).sign("msg_1", _dt(1), "{}")
    assert (
        "webhook-signature"
        not in prepare(opts(url="https://h/", text="t"), NotifyConfig(), "m").headers
    )
    assert (
        "webhook-signature"
        not in prepare(
            opts(url="https://h/", body={}, sign=False), NotifyConfig(secret=SecretStr(SECRET)), "m"
        ).headers
    )


def _dt(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


def test_message_id_is_stable_per_delivery() -> None:
    assert message_id("E1", "rule#0") == message_id("E1", "rule#0")
    assert message_id("E1", "rule#0") != message_id("E1", "rule#1")
    assert message_id("E1", "r#0").startswith("msg_")


def test_redact_hides_the_secret_path() -> None:
    assert redact("https://hooks.slack.com/services/T0/B0/SECRET") == "https://hooks.slack.com/…"
    assert redact("http://[::1]:8080/x?t=1") == "http://[::1]:8080/…"
    assert redact("https://example.com/") == "https://example.com/"


# --------------------------------------------------------------------------- SSRF rules


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.5.5", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback (embedded IPv4 127.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (embedded IPv4 169.254.169.254)"),
        ("64:ff9b::a00:1", "private (embedded IPv4 10.0.0.1)"),
        ("2002:a00:1::1", "private (embedded IPv4 10.0.0.1)"),
    ],
)
def test_non_public_addresses_are_named(address: str, why: str) -> None:
    assert check_address(address) == why


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert check_address(address) is None


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/", "//example.com/", "http:///x"],
)
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(SSRFRefused):
        check_url(url)


def test_check_url_ports() -> None:
    assert check_url("https://Example.com/a") == ("https", "example.com", 443)
    assert check_url("http://[::1]:8080/") == ("http", "::1", 8080)
