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
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from imagemill.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


async def check_public_url(url: str, allowed: Sequence[Network], field: str) -> None:
    """Raise ``InvalidInput(field)`` unless ``url`` is http(s) to public addresses only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("must be an http or https URL", field=field)
    if parts.username or parts.password:
        raise InvalidInput("must not carry credentials", field=field)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput("has an invalid port", field=field) from exc
    await public_addresses(parts.hostname, port, allowed, field)


async def public_addresses(
    host: str, port: int, allowed: Sequence[Network], field: str
) -> list[str]:
    """Every address ``host`` resolves to, once each, if all of them may be called."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"host {host!r} does not resolve", field=field) from exc
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


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast
