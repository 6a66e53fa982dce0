"""Which requests reach the routes: the name the client called the server by, and the web page it came from.

A server on 127.0.0.1 is still reachable from any web page the user opens, in two ways:

* **DNS rebinding**: a page at `evil.example` re-points its own name to 127.0.0.1; the browser
  then treats the server as that page's own origin and lets it read every reply. The request
  still says `Host: evil.example`, so a name in `Host` must be one the server was told about
  (`allowed_hosts`), `localhost` (browsers resolve it to this machine themselves), or an IP
  address, which no other page can own.
* **Cross-origin requests**: a page may send a POST anywhere without asking, and a browser
  always says where the page came from in `Origin`. A request from another origin is refused
  unless that origin was allowed (`cors_origins`, answered by Starlette's `CORSMiddleware`).
  The routes also accept JSON bodies only as `application/json` (`app.read_body`), a type a
  page cannot send elsewhere without the browser asking first.

Starlette's `TrustedHostMiddleware` answers a wrong host in plain text and knows no "any IP
address"; this answers in OpenAI's JSON error shape, like every other refusal.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from sokhan.serve.errors import APIError, error_response


def host_name(host: str) -> str:
    """The name in a Host header, without its port or an IPv6 address's brackets, lower case."""
    if host.startswith("["):
        return host[1:].partition("]")[0].lower()
    return host.rpartition(":")[0].lower() if host.count(":") == 1 else host.lower()


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class RequestGuard:
    """ASGI middleware: a 400 for a Host name not allowed, a 403 for a page of an origin not allowed."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()):
        self.app = app
        self.allowed_hosts = {h.lower().rstrip(".") for h in allowed_hosts}
        self.cors_origins = set(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(Headers(scope=scope))
            if refusal is not None:
                await error_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def host_allowed(self, host: str) -> bool:
        name = host_name(host).rstrip(".")
        return ("*" in self.allowed_hosts or name in self.allowed_hosts or is_ip_address(name)
                or name == "localhost" or name.endswith(".localhost"))

    def origin_allowed(self, origin: str, host: str) -> bool:
        same = urlsplit(origin).netloc.lower() == host.lower()
        return same or "*" in self.cors_origins or origin in self.cors_origins

    def refusal(self, headers: Headers) -> APIError | None:
        host = headers.get("host")
        if host is None:  # HTTP/1.0 without a Host: no browser sends that
            return None
        if not self.host_allowed(host):
            name = host_name(host)
            return APIError(400, f"'{name}' is not a name of this server (a web page that points its own name at "
                            f"this machine sends such requests); start the server with --allowed-host {name} to "
                            "accept it", None, "invalid_host")
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, host):
            return APIError(403, f"requests from web pages at {origin} are refused; start the server with "
                            f"--cors-origin {origin} to allow them", None, "origin_not_allowed")
        return None
