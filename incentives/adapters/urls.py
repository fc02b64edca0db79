"""Postgres URLs taken apart by hand, for the two things done with one before asyncpg sees it:
checking its shape (`database_url_problem`) and showing it without its password (`redact`).

By hand, not with `urllib.parse`: its errors quote the text they refuse, and a URL's text may hold
a password. Nothing here ever returns a part of the URL that could be one.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote_plus

SCHEMES = ("postgresql", "postgres")
# Shown in place of a URL that cannot be taken apart: any part of it could be the password.
UNREADABLE = "(a URL that cannot be read, not shown)"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
# One host of a host list, as asyncpg reads it: a name or IPv4 address, or an [IPv6] address,
# with an optional port; percent-encoded characters allowed (a Unix socket's directory, %2F...).
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._~-]+)?\]|[A-Za-z0-9._~%-]+)(?::(?P<port>[0-9]{1,5}))?")
_PORTS = re.compile(r"[0-9]{1,5}(?:,[0-9]{1,5})*")


def _split(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, user info, host list, path and query), or None when `url` is not scheme://... or
    could be read two ways. The netloc ends at the first '/', '?' or '#', as for urllib and asyncpg;
    an '@' after it could be the end of a password holding one of those unencoded, so such a URL
    is not taken apart (its path and query are not shown either)."""
    scheme, sep, rest = url.partition("://")
    if not sep or _SCHEME.fullmatch(scheme) is None:
        return None
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in tail:
        return None
    userinfo, at, hosts = netloc.rpartition("@")
    return scheme, userinfo if at else "", hosts, tail


def redact(url: str) -> str:
    """`url` without its password, for messages and logs: no password in the user info, no
    parameter whose name holds `password` in the query (any case, percent-encoded or not), no
    fragment. A URL that cannot be taken apart, or whose host list is malformed (`user:secret/db`
    has no '@': urllib reads `secret` as a port), is not shown at all."""
    parts = _split(url)
    if parts is None or not _hosts_are_valid(parts[2]):
        return UNREADABLE
    scheme, userinfo, hosts, tail = parts
    user = userinfo.split(":", 1)[0]
    location, _, query = tail.partition("#")[0].partition("?")
    kept = [param for param in query.split("&") if param and not _is_password(param)]
    return f"{scheme}://{user + '@' if user else ''}{hosts}{location}" + (f"?{'&'.join(kept)}" if kept else "")


def _is_password(param: str) -> bool:
    return "password" in unquote_plus(param.split("=", 1)[0]).lower()


def database_url_problem(url: str) -> str | None:
    """Why `url` is not a Postgres URL asyncpg can use, in words that quote none of it; None when
    it is one."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in SCHEMES:
        return "is not a postgresql:// or postgres:// URL"
    parts = _split(url)
    if parts is None:
        return "has an '@' after its host: percent-encode '@', '/', '?' and '#' in the user and password (%40, %2F, %3F, %23)"
    _, userinfo, hosts, tail = parts
    if "@" in userinfo:
        return "has more than one '@' before its host: percent-encode an '@' in the user and password as %40"
    if not _hosts_are_valid(hosts):
        return "has a malformed host or port: give HOST, HOST:PORT or [IPv6]:PORT (a list separated by commas), ports 1 to 65535"
    query = tail.partition("#")[0].partition("?")[2]
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        return "has a malformed query: give parameters as ?name=value&name=value"
    if any(name == "port" and not _ports_are_valid(value) for name, value in params):
        return "has a malformed port parameter: give ports 1 to 65535, separated by commas"
    return None


def _hosts_are_valid(hosts: str) -> bool:
    """Empty (asyncpg's defaults, or `?host=`), or hosts as asyncpg reads them."""
    return not hosts or all(_host_is_valid(host) for host in hosts.split(","))


def _host_is_valid(host: str) -> bool:
    match = _HOST.fullmatch(host)
    return match is not None and (match["port"] is None or 1 <= int(match["port"]) <= 65535)


def _ports_are_valid(value: str) -> bool:
    return _PORTS.fullmatch(value) is not None and all(1 <= int(port) <= 65535 for port in value.split(","))
