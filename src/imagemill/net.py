"""Checking URLs that imagemill fetches or calls on a user's behalf (webhook targets,
input images): only public addresses, unless inside ``IMAGEMILL_ALLOWED_PRIVATE_NETWORKS``.

Without it anyone who can submit a job could make the server call its own network
(cloud metadata at 169.254.169.254, an admin port on 127.0.0.1): server-side request
forgery. The host is resolved and every address it resolves to is checked.

A check before sending is not enough on its own: the sending client would resolve the
name again, and a hostile DNS server can answer with a public address the first time
and 127.0.0.1 the second ("DNS rebinding"). ``PublicOnlyTransport`` closes that gap: it
resolves and checks the name itself at connect time and connects to the very address it
checked (TLS still verifies the certificate against the name).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from imagemill.boundary import quoted
from imagemill.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")


def check_url(url: str) -> str:
    """``url`` if it is a well-formed absolute http(s) URL that can be called as written;
    else ``ValueError`` saying what is wrong, in plain words."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c.isspace() for c in url):
        raise ValueError("must not contain spaces or control characters (percent-encode them)")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    # What is called must be what was given: nothing re-encoded, nothing left behind.
    if "#" in url:
        raise ValueError("must not have a fragment (#...), which is never sent")
    if _BAD_ESCAPE.search(url):
        raise ValueError("has a % that does not start an escape (%XX)")
    if not (parts.path + parts.query).isascii():
        raise ValueError("must percent-encode the non-ASCII characters of its path and query")
    try:
        port = parts.port  # raises on a port that is not a number from 0 to 65535
        httpx.URL(url)  # what will call it: its host must encode (IDNA), and so on
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValueError("is not a valid URL (check the host and the port)") from exc
    if port == 0:
        raise ValueError("must have a port from 1 to 65535")
    _check_host(parts.hostname)
    return url


def _check_host(host: str) -> None:
    """``ValueError`` unless ``host`` is an IP address or a name DNS can look up: labels
    of 1 to 63 characters (once IDNA-encoded), 253 in all (RFC 1035)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")  # the ASCII form; raises on an empty or long label
    except UnicodeError as exc:
        raise ValueError(
            "has a host with an empty label or one over 63 characters (check the dots)"
        ) from exc
    if len(encoded.rstrip(b".")) > 253:
        raise ValueError("has a host name over 253 characters")


async def check_public_url(url: str, allowed: Sequence[Network], field: str) -> None:
    """Raise ``InvalidInput(field)`` unless ``url`` is a valid http(s) URL whose host
    resolves to public addresses only."""
    try:
        check_url(url)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc
    parts = urlsplit(url)
    assert parts.hostname is not None
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    await public_addresses(parts.hostname, port, allowed, field)


async def public_addresses(
    host: str, port: int, allowed: Sequence[Network], field: str
) -> list[str]:
    """Every address ``host`` resolves to, once each, if all of them may be called."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
        raise InvalidInput(f"host {quoted(host)} does not resolve", field=field) from exc
    addresses: list[str] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0])
        if _private(address) and not any(address in network for network in allowed):
            raise InvalidInput(
                f"{host} is a private address ({address}); allow its network "
                "in IMAGEMILL_ALLOWED_PRIVATE_NETWORKS to call it",
                field=field,
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    return addresses


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses it resolved and checked itself, in that same call."""

    def __init__(self, allowed: Sequence[Network], field: str) -> None:
        self.allowed = allowed
        self.field = field
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(  # httpcore's interface, timeout included
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await public_addresses(host, port, self.allowed, self.field)
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # as a browser would: the next one if one is down
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not for calls made on a user's behalf")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    """An httpx transport that reaches public addresses only (and ``allowed`` networks),
    checked at connect time; a refused address raises ``InvalidInput(field)``. It never
    goes through a proxy: the address it checks is the one it connects to."""

    def __init__(self, allowed: Sequence[Network], field: str) -> None:
        super().__init__(trust_env=False)
        # The pool is the transport's own (httpx keeps it in ``_pool``): the same as the
        # default one, but connecting through the checking backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_PublicOnlyBackend(allowed, field),
        )


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 forms that carry an IPv4 address in their last 32 bits, which is where a packet to
# them ends up: IPv4-compatible (::a.b.c.d, deprecated), IPv4-translated (RFC 2765) and
# the NAT64 well-known and local-use prefixes (RFC 6052, RFC 8215).
_EMBEDDING_IPV4 = [
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (mapped, compatible, translated,
    NAT64, 6to4, Teredo), which is what calling it reaches."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client)
    if any(address in network for network in _EMBEDDING_IPV4):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return found


def _private(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address in ipaddress.IPv6Network("::/127"):  # :: and ::1, not IPv4-compatible
            return True
        if any(_private(inner) for inner in embedded_ipv4(address)):
            return True
    return not address.is_global or address.is_multicast
