"""Who sent a request, behind the proxies the service trusts, and how much a client may send.

The types here validate the settings that say so (RATE_LIMIT, TRUSTED_PROXIES) in every
framework's ``Settings``; ``ratelimit.py`` counts requests by ``client_address``.
"""

import ipaddress
from collections.abc import Sequence
from typing import Annotated

from limits import parse
from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split(value: object) -> object:
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


def _networks(value: list[str]) -> list[str]:
    for proxy in value:
        ipaddress.ip_network(proxy, strict=False)
    return value


def _rate(value: str) -> str:
    if value:
        parse(value)
    return value


#: Requests per client in the ``limits`` notation ("600/minute", "20/second"); empty: no limit.
RateLimit = Annotated[str, AfterValidator(_rate)]
#: Addresses or networks, comma-separated in the environment ("10.0.0.0/8,127.0.0.1").
TrustedProxies = Annotated[list[str], NoDecode, BeforeValidator(_split), AfterValidator(_networks)]


def networks(proxies: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(proxy, strict=False) for proxy in proxies]


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client: the peer, or, while the peer is a trusted proxy, the address it forwarded for.

    X-Forwarded-For is read from the right, each proxy having appended the address it received
    from; the first address that is not a trusted proxy is the client. Anything further left was
    written by the client itself and proves nothing.
    """
    hops = [peer or "unknown"]
    if forwarded_for:
        hops += reversed([hop.strip() for hop in forwarded_for.split(",") if hop.strip()])
    for hop in hops:
        if not _within(hop, trusted):
            return hop
    return hops[-1]


def _within(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
