"""Who the client is when requests come through proxies (an ingress, a load balancer).

``X-Forwarded-For`` is whatever the sender wrote, with each proxy appending the address it saw
the request come from. It is believed only when the peer is one of our own proxies
(``WHISTLE_TRUSTED_PROXIES``), and then only from the right: the client is the right-most
address that is not itself one of our proxies, the last one a proxy we trust saw. Anything to
its left was written by the client and proves nothing. With no trusted proxies (the default)
the header is ignored and the client is the peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def network(entry: str) -> Network:
    """An address or CIDR block (``10.0.0.7``, ``10.244.0.0/16``, ``fd00::/8``); ValueError if
    it is neither."""
    return ipaddress.ip_network(entry.strip(), strict=False)


@lru_cache(maxsize=16)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(network(entry) for entry in entries)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(text: str, trusted: Sequence[Network]) -> bool:
    address = _address(text)
    return address is not None and any(address in net for net in trusted)


def forwarded_chain(headers: Iterable[str]) -> list[str]:
    """The addresses of every ``X-Forwarded-For`` header line, left to right."""
    return [part.strip() for line in headers for part in line.split(",") if part.strip()]


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[str]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the right-most
    address of ``X-Forwarded-For`` that is not a trusted proxy (the left-most if all are)."""
    if peer is None:
        return "unknown"
    networks = trusted_networks(tuple(trusted))
    if not _trusted(peer, networks):
        return peer
    chain = forwarded_chain(forwarded_for)
    for hop in reversed(chain):
        if not _trusted(hop, networks):
            address = _address(hop)
            return str(address) if address is not None else hop
    return chain[0] if chain else peer
