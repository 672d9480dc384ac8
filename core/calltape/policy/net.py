"""``net_allowlist``: URL and host arguments checked against an allowlist, with an SSRF guard.

Every URL or host argument a tool declares (``ToolSpec.urls``: ``Annotated[str, calltape.URL]``
or ``register(..., urls=[...])``) is parsed with the standard library and its host normalized
before any comparison:

* every IPv4 form a resolver accepts: decimal ``2130706433``, hex ``0x7f000001``, octal
  ``0177.0.0.1``, short ``127.1``, mixed ``0x7f.1``;
* IPv6 in brackets, IPv4-mapped ``::ffff:127.0.0.1``, and IPv4 embedded by 6to4, NAT64 and the
  deprecated IPv4-compatible form (the embedded address must be public too);
* userinfo (``http://allowed@evil`` goes to ``evil``), a trailing dot, uppercase,
  percent-encoding in the host, and IDNA (``ｌｏｃａｌｈｏｓｔ`` and ``127。0。0。1`` are
  ``localhost`` and ``127.0.0.1``).

Anything two parsers could read differently is denied rather than guessed: backslashes,
control characters and spaces, several ``@``, a numeric-looking host that is not a valid IPv4
address, empty labels, a URL with a scheme but no ``//host``.

Loopback, private, link-local (``169.254.169.254`` included), shared, reserved, multicast and
unspecified addresses, and local-only names (``localhost``, ``*.localhost``, ``*.internal``,
``*.local``, single-label names) are denied unless an entry names them explicitly.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import unquote

from calltape.errors import PolicyError
from calltape.policy import Decision, ToolCall

__all__ = [
    "HostAllowlist",
    "NetAllowlist",
    "Target",
    "TargetError",
    "net_allowlist",
    "parse_target",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Iterable[str]]


class TargetError(ValueError):
    """A URL or host that cannot be read unambiguously (it is denied)."""


class Target(NamedTuple):
    """A parsed URL or host: the scheme (None for a bare host), the normalized host, the port.

    ``host`` is the ASCII lower-case name without a trailing dot, or the canonical text of
    ``ip`` when the host is an address (IPv4-mapped IPv6 addresses become IPv4).
    """

    scheme: str | None
    host: str
    ip: IPAddress | None
    port: int | None


_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_HOSTPORT = re.compile(r"[^:/?#@\[\]]*:\d+(?:[/?#]|\Z)")
_NETLOC_END = re.compile(r"[/?#]")
_HOST_CHARS = re.compile(r"[a-z0-9_\-.]+\Z")
_DEC = re.compile(r"[0-9]+\Z")
_OCT = re.compile(r"[0-7]+\Z")
_HEX = re.compile(r"[0-9a-fA-F]*\Z")
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)\Z")

#: ß, ς, ZWNJ, ZWJ: IDNA 2003 (the stdlib codec) maps them away, IDNA 2008 / UTS 46 (browsers,
#: the ``idna`` package under requests and httpx) keeps them: two parsers, two hosts.
_IDNA_DEVIATIONS = re.compile("[\u00df\u03c2\u200c\u200d]")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_V4_COMPAT = ipaddress.IPv6Network("::/96")

#: Names that only ever mean this machine or this network: denied unless listed exactly.
_LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata.google.internal",
        "instance-data",
    }
)
_LOCAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa", ".lan")


def _ipv4_number(part: str) -> int:
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not _HEX.match(digits):
            raise TargetError(f"bad hexadecimal IPv4 part {part!r}")
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part[0] == "0":
        if not _OCT.match(part):
            raise TargetError(f"bad octal IPv4 part {part!r}")
        return int(part, 8)
    if not _DEC.match(part):
        raise TargetError(f"bad IPv4 part {part!r}")
    return int(part)


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a resolver would read in ``host`` (inet_aton / WHATWG forms), or None.

    Raises:
        TargetError: the last label is numeric but the whole is not a valid IPv4 address.
    """
    parts = host.split(".")
    if not _NUMERIC_LABEL.match(parts[-1]):
        return None
    if len(parts) > 4:
        raise TargetError(f"host {host!r} looks numeric but is not a valid IPv4 address")
    try:
        nums = [_ipv4_number(p) for p in parts]
    except TargetError as exc:
        raise TargetError(f"host {host!r} looks numeric but is not an IPv4 address ({exc})")
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise TargetError(f"host {host!r} has an IPv4 part out of range")
    value = nums[-1]
    for i, n in enumerate(nums[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _canonical_ip(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _normalize_host(raw: str, bracketed: bool) -> tuple[str, IPAddress | None]:
    if bracketed:
        addr = raw.split("%", 1)[0]  # an IPv6 zone id does not change the address
        try:
            ip = _canonical_ip(ipaddress.IPv6Address(addr))
        except ValueError:
            raise TargetError(f"[{raw}] is not an IPv6 address") from None
        return str(ip), ip
    host = raw
    for _ in range(4):  # percent-encoding in a host is decoded by WHATWG parsers
        decoded = unquote(host, errors="strict")
        if decoded == host:
            break
        host = decoded
    else:
        raise TargetError(f"host {raw!r} is percent-encoded too many times")
    if not host.isascii():
        deviation = _IDNA_DEVIATIONS.search(host)
        if deviation:
            raise TargetError(
                f"host {raw!r} contains {deviation.group()!r}, which IDNA 2003 and IDNA 2008 "
                "map to different names"
            )
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise TargetError(f"host {raw!r} is not a valid international name ({exc})")
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise TargetError("empty host")
    if len(host) > 253 or not _HOST_CHARS.match(host) or "" in host.split("."):
        raise TargetError(f"host {raw!r} is not a valid host name")
    if ":" not in raw:
        ip4 = _parse_ipv4(host)
        if ip4 is not None:
            return str(ip4), ip4
    return host, None


def _split_hostport(hostport: str, value: str) -> tuple[str, bool, int | None]:
    port_txt = ""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise TargetError(f"{value!r}: unclosed '[' in the host")
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TargetError(f"{value!r}: unexpected {rest!r} after the IPv6 address")
            port_txt = rest[1:]
        bracketed = True
    else:
        n = hostport.count(":")
        if n == 0:
            host = hostport
        elif n == 1:
            host, _, port_txt = hostport.partition(":")
        else:
            raise TargetError(f"{value!r}: an IPv6 address in a URL must be in brackets")
        bracketed = False
    port: int | None = None
    if port_txt:
        if not _DEC.match(port_txt) or int(port_txt) > 65535:
            raise TargetError(f"{value!r}: bad port {port_txt!r}")
        port = int(port_txt)
    return host, bracketed, port


@lru_cache(maxsize=4096)
def parse_target(value: str) -> Target:
    """Parse a URL (``https://host/...``), a scheme-relative URL or a bare ``host[:port]``.

    A pure function of the string (no DNS), so results are cached.

    Raises:
        TargetError: the value is empty, malformed, or could be read two ways.
    """
    if not value:
        raise TargetError("empty URL or host")
    if len(value) > 4096:
        raise TargetError("URL longer than 4096 characters")
    if not value.isascii():
        # fullwidth solidus, colon or at sign become their ASCII selves under NFKC, as they do
        # in browsers' host parsing; the host itself is mapped again by IDNA below
        value = unicodedata.normalize("NFKC", value)
    bad = _BAD_CHARS.search(value)
    if bad:
        raise TargetError(
            f"{value!r} contains {bad.group()!r} (spaces, control characters and backslashes "
            "are read differently by different URL parsers)"
        )
    scheme: str | None = None
    m = _SCHEME.match(value)
    if m and not _HOSTPORT.match(value):
        scheme = m.group(1).lower()
        rest = value[m.end() :]
        if not rest.startswith("//"):
            raise TargetError(f"{value!r} has no host (expected {scheme}://host/...)")
        rest = rest[2:]
    elif value.startswith("//"):
        rest = value[2:]
    else:
        rest = value
    end = _NETLOC_END.search(rest)
    netloc = rest[: end.start()] if end else rest
    userinfo, at, hostport = netloc.rpartition("@")
    if "@" in userinfo:
        raise TargetError(f"{value!r} has more than one '@' in its authority")
    if not at and scheme is None and hostport.count(":") > 1:
        # a bare IPv6 address given as a host
        host, bracketed, port = hostport, True, None
    else:
        host, bracketed, port = _split_hostport(hostport, value)
    name, ip = _normalize_host(host, bracketed)
    return Target(scheme, name, ip, port)


def _ip_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None if it is."""
    ip = _canonical_ip(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = None
        if ip.sixtofour is not None:
            embedded = ip.sixtofour
        elif ip.teredo is not None:
            embedded = ip.teredo[1]
        elif any(ip in net for net in _NAT64) or (ip in _V4_COMPAT and int(ip) > 1):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = _ip_problem(embedded)
            if inner is not None:
                return f"embeds {embedded}, which {inner}"
    if ip.is_loopback:
        return "is a loopback address"
    if ip.is_link_local:
        if str(ip) == "169.254.169.254":
            return "is the cloud metadata address (link-local)"
        return "is a link-local address"
    if ip.is_unspecified:
        return "is the unspecified address"
    if ip.is_multicast:
        return "is a multicast address"
    if ip.is_private:
        return "is a private address"
    if not ip.is_global:
        return "is not a public address (reserved or shared range)"
    return None


def _is_local_name(name: str) -> bool:
    return "." not in name or name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES)


class HostAllowlist:
    """Compiled host entries: names, ``*.domain`` wildcards, IPs, CIDR networks, and ``*``.

    ``*`` allows any public address and any name that is not local-only; a wildcard
    ``*.example.com`` allows the subdomains of ``example.com`` (not ``example.com`` itself).

    Raises:
        ValueError: an entry is not a host name, wildcard, IP address or network.
    """

    __slots__ = ("any_public", "entries", "names", "networks", "suffixes")

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries: tuple[str, ...] = tuple(entries)
        self.any_public = False
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for entry in self.entries:
            if not isinstance(entry, str) or not entry:
                raise ValueError(f"host entry must be a non-empty string, got {entry!r}")
            if "://" in entry:
                raise ValueError(
                    f"bad host entry {entry!r}: expected a host name, *.domain, an IP address "
                    "or a CIDR network, not a URL"
                )
            if entry == "*":
                self.any_public = True
            elif entry.startswith("*."):
                suffix = _entry_host(entry[2:], entry)
                if suffix[1] is not None:
                    raise ValueError(f"bad host entry {entry!r}: a wildcard needs a domain")
                suffixes.append("." + suffix[0])
            elif "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise ValueError(f"bad network {entry!r}: {exc}") from None
            else:
                name, ip = _entry_host(entry, entry)
                if ip is not None:
                    networks.append(ipaddress.ip_network(ip))
                else:
                    names.add(name)
        self.names = frozenset(names)
        self.suffixes = tuple(suffixes)
        self.networks = tuple(networks)

    def ip_allowed(self, ip: IPAddress) -> bool:
        """An address is allowed if a listed IP or network holds it."""
        ip = _canonical_ip(ip)
        return any(ip.version == net.version and ip in net for net in self.networks)

    def check(self, target: Target) -> tuple[str, str] | None:
        """``(kind, reason)`` if ``target``'s host is not allowed, else None. No DNS.

        ``kind`` is ``"private"`` (a non-public address or a local-only name) or ``"host"``.
        """
        if target.ip is not None:
            if self.ip_allowed(target.ip):
                return None
            problem = _ip_problem(target.ip)
            if problem is not None:
                return "private", f"{target.host} {problem}; list it in hosts to allow it"
            if self.any_public:
                return None
            return "host", f"{target.host} is not in the allowlist"
        name = target.host
        if name in self.names or name.endswith(self.suffixes):
            return None
        if self.any_public:
            if _is_local_name(name):
                return (
                    "private",
                    f"{name!r} is a local-only name; list it exactly in hosts to allow it",
                )
            return None
        return "host", f"host {name!r} is not in the allowlist"


def _entry_host(text: str, entry: str) -> tuple[str, IPAddress | None]:
    try:
        target = parse_target(text)
    except TargetError as exc:
        raise ValueError(f"bad host entry {entry!r}: {exc}") from None
    if (
        target.scheme is not None
        or target.port is not None
        or text != text.split("/", maxsplit=1)[0]
    ):
        raise ValueError(
            f"bad host entry {entry!r}: expected a host name, *.domain, an IP address or a "
            "CIDR network (no scheme, port or path)"
        )
    return target.host, target.ip


def _default_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _url_like(text: str) -> bool:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    low = text.lstrip().lower()
    return "://" in low or low.startswith(("//", "\\\\")) or _KNOWN_SCHEME.match(low) is not None


_KNOWN_SCHEME = re.compile(r"(?:https?|ftps?|file|gopher|dict|ldaps?|smb|wss?|jar|tftp|sftp):")

_MISSING = object()


class NetAllowlist:
    """The policy behind :func:`net_allowlist`. Rule ids start with ``net_allowlist.``."""

    __slots__ = ("_allow", "allowlist", "resolve_dns", "resolver", "schemes")

    def __init__(
        self,
        hosts: Iterable[str],
        *,
        schemes: Sequence[str] = ("http", "https"),
        resolve_dns: bool = False,
        resolver: Resolver | None = None,
    ) -> None:
        if isinstance(hosts, str):
            raise PolicyError(f"net_allowlist(hosts): expected a list of hosts, got {hosts!r}")
        try:
            self.allowlist = HostAllowlist(hosts)
        except ValueError as exc:
            raise PolicyError(f"net_allowlist: {exc}") from None
        self.schemes = frozenset(s.lower() for s in schemes)
        self.resolve_dns = resolve_dns
        self.resolver: Resolver = resolver or _default_resolver
        self._allow = Decision.allow("net_allowlist.allow", "every URL argument is allowed")

    def __repr__(self) -> str:
        return f"net_allowlist({list(self.allowlist.entries)!r})"

    def decide(self, call: ToolCall) -> Decision:
        spec = call.spec
        se = call.side_effect
        if se == "exec" or se not in ("read", "write", "network"):
            return _deny(
                f"net_allowlist.{se}",
                f"tool {call.tool!r} has side effect {se!r}, which net_allowlist cannot check "
                "(fail closed); declare what it does, or allow it with a rule",
            )
        if not spec.urls:
            if spec.paths:  # declared, and none of its arguments go to the network
                if se == "network":
                    return _deny(
                        "net_allowlist.undeclared",
                        f"network tool {call.tool!r} declares no URL arguments (fail closed); "
                        "mark them with Annotated[str, calltape.URL] or urls=[...]",
                    )
                return self._allow
            if se != "read":
                return _deny(
                    "net_allowlist.undeclared",
                    f"tool {call.tool!r} ({se}) declares no URL or path arguments, so "
                    "net_allowlist cannot check it (fail closed); mark them with "
                    "Annotated[str, calltape.URL] or register(..., urls=[...])",
                )
            found = _find_strings(call.args, _url_like)
            if found is not None:
                where, text = found
                return _deny(
                    "net_allowlist.undeclared",
                    f"read tool {call.tool!r} declares no URL arguments but {where} looks like "
                    f"a URL ({text!r}); mark it with Annotated[str, calltape.URL] or urls=[...]",
                )
            return self._allow
        args = call.args
        stale = carries_no_declared(spec, args)
        if stale is not None:
            decision = stale_declaration(call, stale, "net_allowlist.undeclared", "URL", _url_like)
            return decision or self._allow
        for name in spec.urls:
            value = args.get(name, _MISSING)
            if value is _MISSING or value is None:
                continue
            values = value if isinstance(value, list | tuple) else (value,)
            for v in values:
                problem = self.check(v)
                if problem is not None:
                    rule, why = problem
                    return _deny(rule, f"argument {name!r} of {call.tool!r}: {why}")
        return self._allow

    def check(self, value: Any) -> tuple[str, str] | None:
        """``(rule, reason)`` if ``value`` is not an allowed URL or host, else None."""
        if not isinstance(value, str):
            return "net_allowlist.invalid", f"expected a URL string, got {type(value).__name__}"
        try:
            target = parse_target(value)
        except TargetError as exc:
            return "net_allowlist.invalid", f"{exc} (fail closed)"
        if target.scheme is not None and target.scheme not in self.schemes:
            return (
                "net_allowlist.scheme",
                f"scheme {target.scheme!r} is not allowed (allowed: "
                f"{', '.join(sorted(self.schemes))})",
            )
        problem = self.allowlist.check(target)
        if problem is not None:
            kind, reason = problem
            return f"net_allowlist.{kind}", reason
        if self.resolve_dns and target.ip is None:
            return self._check_dns(target.host)
        return None

    def _check_dns(self, host: str) -> tuple[str, str] | None:
        try:
            addrs = list(self.resolver(host))
        except Exception as exc:
            return "net_allowlist.dns", f"{host!r} could not be resolved ({exc}); fail closed"
        if not addrs:
            return "net_allowlist.dns", f"{host!r} resolved to no address; fail closed"
        for text in addrs:
            try:
                ip = _canonical_ip(ipaddress.ip_address(str(text).split("%", 1)[0]))
            except ValueError:
                return "net_allowlist.dns", f"{host!r} resolved to {text!r}, not an address"
            if self.allowlist.ip_allowed(ip):
                continue
            problem = _ip_problem(ip)
            if problem is not None:
                return (
                    "net_allowlist.dns",
                    f"{host!r} resolves to {ip}, which {problem}; list the address or its "
                    "network in hosts to allow it",
                )
        return None


def _deny(rule: str, reason: str) -> Decision:
    return Decision("deny", rule, reason)


def carries_no_declared(spec: Any, args: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The declared path/URL names, when the call carries none of them but other arguments.

    A declaration that names none of the call's arguments (a renamed parameter, a typo) checks
    nothing: the presets then treat the call as undeclared (fail closed), never as checked.
    """
    declared = (*spec.paths, *spec.urls)
    if not declared or any(name in args for name in declared):
        return None
    return declared if any(key not in declared for key in args) else None


def stale_declaration(
    call: ToolCall, stale: tuple[str, ...], rule: str, noun: str, looks_like: Callable[[str], bool]
) -> Decision | None:
    """The decision for a call that carries none of its declared arguments (see
    :func:`carries_no_declared`): deny unless it is a read whose strings do not look like a
    ``noun``; None means allow."""
    if call.side_effect != "read":
        return _deny(
            rule,
            f"tool {call.tool!r} declares {', '.join(stale)} but this call carries none of them "
            f"({', '.join(call.args)}), so nothing could be checked (fail closed); fix the "
            "declaration",
        )
    found = _find_strings(call.args, looks_like)
    if found is None:
        return None
    where, text = found
    return _deny(
        rule,
        f"read tool {call.tool!r} declares {', '.join(stale)}, which this call does not carry, "
        f"and {where} looks like a {noun} ({text!r}); fix the declaration",
    )


def _find_strings(
    value: Any, pred: Callable[[str], bool], where: str = "args", depth: int = 0
) -> tuple[str, str] | None:
    """The first string (value or key) under ``value`` for which ``pred`` holds."""
    if depth > 32:
        return where, "<nested too deep>"
    if isinstance(value, str):
        return (where, value) if pred(value) else None
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str) and pred(k):
                return where, k
            hit = _find_strings(v, pred, f"{where}.{k}" if depth else str(k), depth + 1)
            if hit is not None:
                return hit
    elif isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            hit = _find_strings(v, pred, f"{where}[{i}]", depth + 1)
            if hit is not None:
                return hit
    return None


def net_allowlist(
    hosts: Iterable[str],
    *,
    schemes: Sequence[str] = ("http", "https"),
    resolve_dns: bool = False,
    resolver: Resolver | None = None,
) -> NetAllowlist:
    """Allow network access only to the listed hosts; deny private and local targets.

    Args:
        hosts: Host names (``api.github.com``), subdomain wildcards (``*.example.com``), IP
            addresses, CIDR networks (``10.0.0.0/8``), or ``*`` for any public host.
        schemes: URL schemes allowed (a bare ``host[:port]`` has none and is not checked).
        resolve_dns: Also resolve host names and deny those that resolve to a non-public
            address that is not listed (an unresolvable name is denied).
        resolver: ``resolver(host) -> addresses`` (default: ``socket.getaddrinfo``).

    Raises:
        PolicyError: an entry is not a host, wildcard, address or network.
    """
    return NetAllowlist(hosts, schemes=schemes, resolve_dns=resolve_dns, resolver=resolver)
