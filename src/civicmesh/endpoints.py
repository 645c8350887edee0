"""Where the platform may connect on a caller's behalf: the endpoint policy for outbound requests.

Notification receivers (HTTP and MQTT), context-source registrations and (later) Dataspace Protocol callbacks are
URLs a caller chooses, so without a policy the server becomes the caller's proxy into its own network: the
database on 127.0.0.1:5432, a cloud's metadata service on 169.254.169.254 (which hands out credentials), private
ranges behind the firewall. This module decides, for one URL, which address the platform may connect to:

- link-local and cloud-metadata addresses are always refused, even when listed in the allow list;
- every address that is not globally routable (loopback, private, shared, unspecified, reserved, multicast...) is
  refused unless the allow list (`Settings.endpoint_allow`, CIVICMESH_ENDPOINT_ALLOW) names it;
- the check runs on the resolved addresses, so decimal, octal and hex spellings of an IPv4 address
  (`2130706433`, `0177.0.0.1`, `0x7f.1`) and names that resolve to a refused address are refused alike;
- `resolve` returns the checked address and the caller connects to that address (pinning), so a DNS answer that
  changes between check and connect (rebinding) cannot redirect the connection.

Header names and values a caller sends along (receiverInfo) must be RFC 9110 tokens and field values: no CR, LF
or NUL, so a value cannot end the header block and smuggle a second request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from civicmesh.errors import Problem

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused whatever the allow list says: link-local (where every cloud puts its metadata service) and the
# metadata addresses that are not link-local (Alibaba 100.100.100.200, AWS's IPv6 fd00:ec2::254, Azure's
# wireserver 168.63.129.16, Oracle's 192.0.0.192).
ALWAYS_DENIED: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128", "168.63.129.16/32",
    "192.0.0.192/32"))
DEFAULT_PORTS = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}
# RFC 9110 section 5.6.2: a field name is a token; section 5.5: a value is visible characters, spaces and tabs.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FIELD_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
# Longest header value a caller may set; receiverInfo values are short keys and tokens, 8 KiB is ample.
MAX_HEADER_VALUE = 8192
# How long a host name's resolved addresses are reused at send time.
RESOLVED_SECONDS = 30.0
_resolved: dict[tuple[str, int], tuple[float, list[Address]]] = {}


class EndpointRefused(Exception):
    """The endpoint's address is not one the platform may connect to; the message says which and why."""


@dataclass(frozen=True)
class Allow:
    """The allow list: networks (any port), exact (address, port) pairs, host names (with an optional port)."""

    networks: tuple[Network, ...] = ()
    address_ports: frozenset[tuple[Address, int]] = frozenset()
    hosts: frozenset[tuple[str, int | None]] = frozenset()

    def admits(self, host: str, address: Address, port: int) -> bool:
        name = host.lower().rstrip(".")
        if (name, None) in self.hosts or (name, port) in self.hosts:
            return True
        if (address, port) in self.address_ports:
            return True
        return any(address in net for net in self.networks)


@lru_cache(maxsize=16)
def parse_allow(text: str) -> Allow:
    """Parse CIVICMESH_ENDPOINT_ALLOW: comma-separated `10.0.0.5`, `10.0.0.0/8`, `[::1]:8080`, `10.0.0.5:8080`,
    `hooks.internal` or `hooks.internal:8443`. Raises ValueError naming the entry it cannot read."""
    networks: list[Network] = []
    pairs: set[tuple[Address, int]] = set()
    hosts: set[tuple[str, int | None]] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        host, port = _host_port(entry)
        try:
            pairs.add((ipaddress.ip_address(host), port if port is not None else -1))
            if port is None:
                networks.append(ipaddress.ip_network(host))
            continue
        except ValueError:
            pass
        if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
            raise ValueError(f"endpoint allow-list entry {entry!r} is not an address, CIDR or host[:port]")
        hosts.add((host.lower().rstrip("."), port))
    return Allow(tuple(networks), frozenset(p for p in pairs if p[1] >= 0), frozenset(hosts))


def _host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    if port and not port.isdigit():
        raise ValueError(f"endpoint allow-list entry {entry!r} has a port that is not a number")
    return host, int(port) if port else None


@lru_cache(maxsize=4096)
def _verdict(address: Address, host: str, port: int, allow_text: str) -> str | None:
    # ipaddress's is_global walks a dozen networks; with the lookup cache a host name's send-time check costs
    # 1.9 us instead of 175 us (uncached, /etc/hosts), an address in the URI 0.2 us instead of 85 us.
    return refusal(address, host, port, parse_allow(allow_text))


def refusal(address: Address, host: str, port: int, allow: Allow) -> str | None:
    """Why the platform may not connect to `address` (reached as `host`), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in net for net in ALWAYS_DENIED):
        return f"{address} is a link-local or cloud-metadata address, which is never allowed"
    if address.is_global and not address.is_multicast:
        return None
    if allow.admits(host, address, port):
        return None
    return (f"{address} is a loopback, private or otherwise non-public address; list it in "
            "CIVICMESH_ENDPOINT_ALLOW to allow it")


@lru_cache(maxsize=4096)
def _split(uri: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an endpoint URI, or EndpointRefused when it has none."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in uri):
        raise EndpointRefused(f"endpoint {uri!r} has spaces or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise EndpointRefused(f"endpoint {uri!r} is not a valid URI: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise EndpointRefused(f"endpoint {uri!r} is not an http(s) or mqtt(s) URI with a host")
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


@lru_cache(maxsize=4096)
def _literal(host: str) -> Address | None:
    """The address a host names without DNS: any IPv6 form, and every IPv4 spelling the C resolver accepts
    (`2130706433`, `0177.0.0.1`, `0x7f.0.0.1`, `127.1`), which ipaddress alone would not recognise."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return ipaddress.ip_address(infos[0][4][0])


def check_uri(uri: str, allow_text: str) -> None:
    """At creation: refuse an endpoint whose host is a refused address or a loopback name, with a 400.
    Host names are checked again after resolution at each send (`resolve`), where it matters. A URI of another
    scheme is left to the caller's own validation (a registration may name a non-HTTP context source)."""
    if urlsplit(uri).scheme.lower() not in DEFAULT_PORTS:
        return
    try:
        scheme, host, port = _split(uri)
        allow = parse_allow(allow_text)
        address = _literal(host)
        if address is None and (host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost")):
            address = ipaddress.ip_address("127.0.0.1")  # RFC 6761: localhost names are loopback by definition
        why = refusal(address, host, port, allow) if address is not None else None
    except (EndpointRefused, ValueError) as exc:
        raise Problem("BadRequestData", f"endpoint {uri!r} is refused: {exc}") from None
    if why is not None:
        raise Problem("BadRequestData", f"endpoint {uri!r} is refused: {why}")


async def resolve(uri: str, allow_text: str) -> str:
    """At each send: resolve the endpoint's host and return the one address to connect to (pinned).
    Raises EndpointRefused when it does not resolve or every address it resolves to is refused."""
    fixed = _literal_answer(uri, allow_text)
    if fixed is not None:  # an address in the URI: the answer never changes, so it is worked out once
        pinned, refused = fixed
        if refused is not None:
            raise EndpointRefused(refused)
        return pinned
    scheme, host, port = _split(uri)
    addresses = await _lookup(host, port)
    reasons = []
    for address in addresses:
        why = _verdict(address, host, port, allow_text)
        if why is None:
            return str(address)  # the connection goes here and nowhere else, so the other answers do not matter
        reasons.append(why)
    raise EndpointRefused(f"endpoint {scheme}://{host}:{port} refused: {'; '.join(reasons)}")


@lru_cache(maxsize=4096)
def _literal_answer(uri: str, allow_text: str) -> tuple[str, str | None] | None:
    """(address, why refused or None) for a URI whose host is an address; None for a host name. Raises
    EndpointRefused for a URI without a host or an unreadable allow list."""
    scheme, host, port = _split(uri)
    try:
        allow = parse_allow(allow_text)
    except ValueError as exc:
        raise EndpointRefused(str(exc)) from None
    address = _literal(host)
    if address is None:
        return None
    why = refusal(address, host, port, allow)
    return str(address), None if why is None else f"endpoint {scheme}://{host}:{port} refused: {why}"


async def _lookup(host: str, port: int) -> list[Address]:
    """The addresses a name resolves to, remembered for RESOLVED_SECONDS: a lookup costs a thread hop (about
    100 us for /etc/hosts, a round trip for DNS) per notification otherwise. Remembering is safe because every
    address is checked and the connection goes to the checked one."""
    now = time.monotonic()
    known = _resolved.get((host, port))
    if known is not None and known[0] > now:
        return known[1]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EndpointRefused(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))
    if not addresses:
        raise EndpointRefused(f"{host} resolves to no address")
    if len(_resolved) > 4096:
        _resolved.clear()
    _resolved[(host, port)] = (now + RESOLVED_SECONDS, addresses)
    return addresses


def header_problem(name: Any, value: Any) -> str | None:
    """Why (name, value) cannot be sent as an HTTP header field, or None."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        return f"header name {name!r} is not an RFC 9110 token"
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_HEADER_VALUE:
        return f"header {name} has a value of {len(text)} characters; the limit is {MAX_HEADER_VALUE}"
    if not _FIELD_VALUE.match(text):
        return f"header {name} has a value with control characters (CR, LF, NUL...)"
    return None


def check_header_items(items: Iterable[Mapping[str, Any]], where: str) -> None:
    """At creation: every {key, value} of receiverInfo/notifierInfo is a header that can be sent, else a 400."""
    for item in items:
        why = header_problem(item.get("key"), item.get("value"))
        if why is not None:
            raise Problem("BadRequestData", f"{where}: {why}")


def check_headers(headers: Mapping[str, str]) -> None:
    """At send: the same check on the headers about to be written (rows queued before this check existed)."""
    for name, value in headers.items():
        why = header_problem(name, value)
        if why is not None:
            raise EndpointRefused(why)


def pinned_request(client: Any, uri: str, body: bytes, headers: Mapping[str, str], address: str) -> Any:
    """An httpx POST of `uri` that connects to the checked `address` while TLS still verifies the certificate
    for the URI's host name (SNI) and the receiver still sees its own Host header."""
    check_headers(headers)
    parts = urlsplit(uri)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = parts._replace(netloc=netloc).geturl()
    host_header = parts.netloc.rpartition("@")[2]
    return client.build_request("POST", pinned, content=body, headers={**headers, "Host": host_header},
                                extensions={"sni_hostname": parts.hostname})
