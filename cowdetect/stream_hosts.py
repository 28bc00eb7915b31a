"""Which hosts a live stream may be read from by someone who is not an admin: only those an admin
listed in ``COWDETECT_STREAM_HOSTS`` (host names, IP addresses or CIDR networks separated by
commas) — the same pattern as :mod:`cowdetect.import_roots` for server folders.

A live run makes the server connect where the URL says. Without this list a trainer could make it
open internal hosts and ports and read the answer ("refused" / "no answer" / "no video") as a port
scanner. So every host outside the list gets the same :data:`NOT_ALLOWED` words, whatever it is.
Host names are compared as written (lower case, no trailing dot) and never resolved here: a listed
network allows IP addresses written in the URL, not names that happen to resolve into it (the
answer could change between this check and FFmpeg's connection).
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

ENV = "COWDETECT_STREAM_HOSTS"
NOT_ALLOWED = f"stream: that host is not one the admin allowed for live streams ({ENV})."
HOW_TO_ALLOW = (f"Only an admin may read streams from any host. An admin lets others use cameras by listing their "
                f"hosts in {ENV} (names, IPs or networks separated by ','), e.g. "
                f"{ENV}=camera1.barn,192.168.10.0/24 ./run.sh app")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def stream_hosts(value: str | None = None) -> tuple[set[str], list[Network]]:
    """(allowed host names, allowed networks) from ``value`` or else ``$COWDETECT_STREAM_HOSTS``;
    a single IP is a network of one address. Empty: no host is allowed to non-admins."""
    text = os.environ.get(ENV, "") if value is None else value
    names: set[str] = set()
    networks: list[Network] = []
    for entry in (e.strip().lower().rstrip(".") for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry)
    return names, networks


def url_host(url: str) -> str | None:
    """The host of ``url`` as FFmpeg reads it (lower case, IPv6 without brackets), or None."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def allowed_host(url: str, value: str | None = None) -> str:
    """``url`` when its host is in the allow-list (see :func:`stream_hosts`).

    Raises:
        ValueError: :data:`NOT_ALLOWED`, the same words for every host outside the list.
    """
    names, networks = stream_hosts(value)
    host = url_host(url)
    if host is not None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host in names:
                return url
        else:
            if any(address in net for net in networks):
                return url
    raise ValueError(NOT_ALLOWED)
