"""IP allow-lists and the client address behind trusted proxies."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from sagevault.errors import AccessError, shown

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# With no global allow-list entry, only this machine may connect.
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def parse_network(cidr: str) -> Network:
    """A CIDR (IPv4 or IPv6) with no host bits set; a bare address is a /32 or /128."""
    try:
        return ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise AccessError(
                f"{shown(cidr)} is not an IPv4 or IPv6 network; write it as CIDR, e.g. 203.0.113.0/24 or 2001:db8::/32"
            ) from None
        raise AccessError(f"{cidr.strip()} has host bits set; did you mean {loose}?") from None


def parse_address(value: str) -> Address:
    """`value` as an address (an IPv4-mapped IPv6 address as its IPv4 address). Remembered for
    the most recent few thousand: every request parses its source several times."""
    return _parse_address(value)


@functools.lru_cache(maxsize=4096)
def _parse_address(value: str) -> Address:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise AccessError(f"{shown(value)} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:192.0.2.1 is 192.0.2.1
    return address


def overlapping(new: Network, existing: Iterable[Network]) -> Network | None:
    for net in existing:
        if net.version == new.version and net.overlaps(new):
            return net
    return None


def contains(networks: Sequence[Network], address: Address) -> bool:
    return any(address in net for net in networks if net.version == address.version)


def client_address(peer: str, forwarded_for: str | None, trusted_proxies: Sequence[Network]) -> Address:
    """The address a request came from. `X-Forwarded-For` is believed only when the peer is a
    trusted proxy, and then only up to the first hop that is not one: the right-most untrusted
    address is the client (anything to its left was written by the client and may be forged)."""
    address = parse_address(peer)
    if not forwarded_for or not contains(trusted_proxies, address):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            address = parse_address(hop)
        except AccessError:
            raise AccessError("X-Forwarded-For holds something that is not an IP address") from None
        if not contains(trusted_proxies, address):
            return address
    return address
