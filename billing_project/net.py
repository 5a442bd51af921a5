"""Who is asking: the client's address, as the trusted proxy in front reports it.

Behind a proxy every request arrives from the proxy's address, so a lockout by
`REMOTE_ADDR` would lock every staff member out together, and a limit by address would
limit everyone at once. The address is taken from `X-Forwarded-For` only when the request
comes from a proxy listed in TRUSTED_PROXIES, and then it is the nearest address that
is not itself a trusted proxy: a client cannot choose it by sending the header.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _trusted(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: Any) -> str:
    """The client's address: REMOTE_ADDR, or, from a trusted proxy, the right-most address
    in X-Forwarded-For that is not a trusted proxy (the one the proxy saw)."""
    meta = request.META
    remote = str(meta.get("REMOTE_ADDR") or "")
    networks = _trusted(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _is_trusted(remote, networks):
        return remote
    hops = [hop.strip() for hop in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # a proxy that forwards garbage: the proxy is all we know
    return remote
