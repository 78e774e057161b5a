"""Checking URLs that imagemill fetches or calls on a user's behalf (webhook targets,
input images): only public addresses, unless inside ``IMAGEMILL_ALLOWED_PRIVATE_NETWORKS``.

Without it anyone who can submit a job could make the server call its own network
(cloud metadata at 169.254.169.254, an admin port on 127.0.0.1): server-side request
forgery. The host is resolved and every address it resolves to is checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

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
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise InvalidInput(f"host {parts.hostname!r} does not resolve", field=field) from exc
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0])
        if _private(address) and not any(address in network for network in allowed):
            raise InvalidInput(
                f"{parts.hostname} is a private address ({address}); allow its network "
                "in IMAGEMILL_ALLOWED_PRIVATE_NETWORKS to call it",
                field=field,
            )


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast
