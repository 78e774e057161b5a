"""URLs fetched or called on a user's behalf: public addresses only, unless allowed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from imagemill.errors import InvalidInput
from imagemill.net import PublicOnlyTransport, check_public_url, networks, public_addresses


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
        ("http://example.com:99999/hook", "port"),
        ("http://example.com/a\x00b", "control characters"),
        ("http://example.com/a b", "spaces"),
        ("http://[::127.0.0.1]/hook", "private address"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
        # Names DNS cannot look up (the lookup raised UnicodeError: a 500).
        ("http://a..com/hook", "empty label"),
        ("http://.example.com/hook", "empty label"),
        ("http://" + "a" * 64 + ".com/hook", "over 63 characters"),
        ("http://" + "a." * 127 + "com/hook", "over 253 characters"),
        ("http://93.184.216.34:0/hook", "port from 1 to 65535"),
    ],
)
async def test_refused_targets_name_the_field_and_the_reason(url: str, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await check_public_url(url, [], "webhook_url")
    assert refused.value.field == "webhook_url"
    assert says in refused.value.message


async def test_a_name_the_resolver_cannot_encode_is_a_refusal_not_a_crash() -> None:
    """The check before resolving is the first guard; this is the one at connect time."""
    with pytest.raises(InvalidInput) as refused:
        await public_addresses("a..com", 80, [], "webhook_url")
    assert refused.value.field == "webhook_url"


async def test_a_public_address_is_fine() -> None:
    await check_public_url("https://93.184.216.34/hook", [], "webhook_url")


async def test_an_allowed_network_lets_a_private_address_through() -> None:
    allowed = networks(["127.0.0.0/8", "::1/128"])
    await check_public_url("http://127.0.0.1:8080/hook", allowed, "webhook_url")
    await check_public_url("http://[::1]:8080/hook", allowed, "webhook_url")
    with pytest.raises(InvalidInput):
        await check_public_url("http://10.0.0.1/hook", allowed, "webhook_url")


@pytest.fixture
async def local_server() -> AsyncIterator[int]:
    """A tiny HTTP server on 127.0.0.1 answering 204 to anything; its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_the_transport_connects_only_where_the_check_allows(local_server: int) -> None:
    url = f"http://localhost:{local_server}/hook"
    refusing = httpx.AsyncClient(transport=PublicOnlyTransport([], "webhook_url"))
    allowing = httpx.AsyncClient(
        transport=PublicOnlyTransport(networks(["127.0.0.0/8", "::1/128"]), "webhook_url")
    )
    async with refusing, allowing:
        with pytest.raises(InvalidInput) as refused:
            await refusing.post(url)
        assert refused.value.field == "webhook_url"
        assert (await allowing.post(url)).status_code == 204


async def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused(
    local_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: public when checked, 127.0.0.1 when the client connects."""
    answers = iter(["93.184.216.34", "127.0.0.1"])

    async def rebinding(host: str, port: int, **_: Any) -> list[Any]:
        address = next(answers)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding)
    url = f"http://rebind.example:{local_server}/hook"
    await check_public_url(url, [], "webhook_url")  # the first answer passes

    async with httpx.AsyncClient(transport=PublicOnlyTransport([], "webhook_url")) as client:
        with pytest.raises(InvalidInput, match="private address"):
            await client.post(url)
