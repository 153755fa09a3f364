"""Token buckets and the admin-login brake, on a controlled clock (no I/O)."""

from __future__ import annotations

import pytest

from nethook.security.limits import FailedLogins, TokenBucket, retry_after_header


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(per_minute=60, burst=3)  # one token a second
    assert [bucket.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a", 0.0) == pytest.approx(1.0)
    assert bucket.wait("a", 0.5) == pytest.approx(0.5)  # looking takes nothing
    assert bucket.wait("a", 0.5) == pytest.approx(0.5)
    assert bucket.take("a", 1.0) == 0.0
    assert bucket.take("b", 1.0) == 0.0  # per key
    assert bucket.wait("never-seen", 0.0) == 0.0


def test_failed_logins_brake_per_client_and_recovery() -> None:
    brake = FailedLogins(per_minute=3)
    for _ in range(3):
        assert brake.retry_after("192.0.2.7", now=0.0) == 0.0
        brake.failed("192.0.2.7", now=0.0)
    wait = brake.retry_after("192.0.2.7", now=0.0)
    assert wait == pytest.approx(20.0)  # 3 a minute: one every 20 s
    assert retry_after_header(wait) == "20"
    assert brake.retry_after("192.0.2.8", now=0.0) == 0.0  # another client is not braked
    assert brake.retry_after("192.0.2.7", now=20.0) == 0.0


def test_failed_logins_count_an_ipv6_slash_64_as_one_client() -> None:
    brake = FailedLogins(per_minute=2)
    brake.failed("2001:db8:1:2::1", now=0.0)
    brake.failed("2001:db8:1:2:ffff::9", now=0.0)  # same /64, another address
    assert brake.retry_after("2001:db8:1:2::abcd", now=0.0) > 0
    assert brake.retry_after("2001:db8:1:3::1", now=0.0) == 0.0  # the next /64
    # An IPv4 client seen on a dual-stack socket stays that one address.
    assert FailedLogins.key("::ffff:192.0.2.1") == "::ffff:192.0.2.1"
    assert FailedLogins.key("not-an-address") == "not-an-address"
