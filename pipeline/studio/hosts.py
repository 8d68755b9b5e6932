"""Which names the studio answers to: a guard against DNS rebinding.

A page on evil.example.com can have its name re-pointed at 127.0.0.1 once loaded; the
browser then sends it to the studio as its own origin, with `Host: evil.example.com`.
Answering only the names that mean this studio (loopback, or what --host named) shuts that
door. Listening on every address (0.0.0.0, ::) was asking for other machines, reaching it
by names this machine cannot know (its IPs, DNS names, a proxy's): then any Host is answered.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost",)
SHOWN_LOOPBACK = "127.0.0.1, localhost and [::1]"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or :: (every address of this machine)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without its port: lower case, IPv6 without brackets,
    IP addresses in their usual spelling, no trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):
        name = header[1:header.find("]")] if "]" in header else header[1:]
    elif header.count(":") == 1:
        name = header.split(":")[0]
    else:
        name = header  # no port, or a bare IPv6 address
    name = name.rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def answers_to(listening: str, header: str | None) -> bool:
    """Whether a studio listening on `listening` answers a request with this Host header."""
    if is_wildcard(listening):
        return True
    if not header:
        return False
    name = host_name(header)
    return bool(name) and (is_loopback(name) or name == host_name(listening))


def refusal(listening: str, header: str | None) -> str:
    """What a refused request reads, and how to allow the name."""
    own = "" if is_loopback(host_name(listening)) else f" and {listening}"
    if not header:
        return f"refused: a request without a Host header (this studio answers to {SHOWN_LOOPBACK}{own})\n"
    name = host_name(header)[:100]
    return (f"refused: this studio answers to {SHOWN_LOOPBACK}{own}, not to {name} (a guard against DNS rebinding).\n"
            f"To open it by that name, serve it with --host {name} (or --host 0.0.0.0 for any name; other machines can then use it).\n")


class HostGuard:
    """ASGI middleware: requests (and websockets) whose Host is not one the studio answers to
    get 403 and a plain-text reason; everything else, lifespan included, passes through."""

    def __init__(self, app, listening: str):
        self.app = app
        self.listening = listening

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            header = next((value.decode("latin-1") for key, value in scope.get("headers", ()) if key == b"host"), None)
            if not answers_to(self.listening, header):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})  # before accepting: the server answers 403
                    return
                body = refusal(self.listening, header).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                                        (b"x-content-type-options", b"nosniff")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
