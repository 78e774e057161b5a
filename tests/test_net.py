"""URLs fetched or called on a user's behalf: public addresses only, unless allowed."""

from __future__ import annotations

import pytest

from imagemill.errors import InvalidInput
from imagemill.net import check_public_url, networks


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/x", "http or https"),
        ("http:///nohost", "http or https"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("http://127.0.0.1:9/hook", "private address"),
        ("http://localhost/hook", "private address"),
        ("http://10.1.2.3/hook", "private address"),
        ("http://192.168.0.10/hook", "private address"),
        ("http://169.254.169.254/latest/meta-data", "private address"),
        ("http://[::1]/hook", "private address"),
        ("http://[::ffff:127.0.0.1]/hook", "private address"),
        ("http://[fe80::1]/hook", "private address"),
        ("http://0.0.0.0/hook", "private address"),
        ("http://example.com:99999/hook", "invalid port"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
async def test_refused_targets_name_the_field_and_the_reason(url: str, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await check_public_url(url, [], "webhook_url")
    assert refused.value.field == "webhook_url"
    assert says in refused.value.message


async def test_a_public_address_is_fine() -> None:
    await check_public_url("https://93.184.216.34/hook", [], "webhook_url")


async def test_an_allowed_network_lets_a_private_address_through() -> None:
    allowed = networks(["127.0.0.0/8", "::1/128"])
    await check_public_url("http://127.0.0.1:8080/hook", allowed, "webhook_url")
    await check_public_url("http://[::1]:8080/hook", allowed, "webhook_url")
    with pytest.raises(InvalidInput):
        await check_public_url("http://10.0.0.1/hook", allowed, "webhook_url")
