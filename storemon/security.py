"""Who may call storemon: API tokens, and without them, this machine's own pages only.

Applied once, before every request (:func:`init_app`), not in each view.

With ``STOREMON_API_TOKENS`` set (comma-separated), every endpoint but ``/health`` needs
``Authorization: Bearer <token>`` -- or HTTP Basic with the token as the password, so a browser's
login prompt and ``curl -u :token`` work. Tokens are compared in constant time; a missing or
wrong one gets ``401`` JSON with ``WWW-Authenticate`` challenges for both schemes.

Without tokens the server is meant for this machine only:

* it refuses to start on a non-loopback address unless ``STOREMON_ALLOW_OPEN=1``
  (:func:`check_bind`, called from ``gunicorn.conf.py``);
* it answers only requests whose ``Host`` is a loopback name (or one listed in
  ``STOREMON_ALLOWED_HOSTS``), which defeats DNS rebinding -- a web page on another site whose
  name was pointed at 127.0.0.1 (skipped with ``STOREMON_ALLOW_OPEN=1``);

In every mode, tokens or not, a state-changing request -- any method but GET, HEAD and OPTIONS,
and ``GET /trigger_report``, which creates a report -- that a browser marks as coming from
another site is refused (``403``), whatever credentials it carries: an ``Origin`` or ``Referer``
that is not this server, or ``Sec-Fetch-Site: cross-site``/``same-site``. A page elsewhere can
make a browser send a form or ``text/plain`` POST without a CORS preflight, and a browser that
logged in through the Basic prompt sends the token with it; this check stops both. Requests
without those headers (curl, scripts) are not affected.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import Flask, current_app, request
from werkzeug.exceptions import Forbidden, Unauthorized

from .config import ConfigError, tokens

OPEN_PATHS = ("/health",)
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
# Views that change state even when called with GET.
STATE_CHANGING_GET = ("/trigger_report",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def init_app(app: Flask) -> None:
    app.before_request(guard)
    app.after_request(browser_headers)


def guard() -> None:
    """The check run before every request (raises a JSON 401 / 403)."""
    config = current_app.config
    if _state_changing() and not _same_origin():
        # First, in every mode: a browser logged in with a token (Basic prompt) would send it
        # along with a form another site makes it submit.
        raise Forbidden(
            "cross-site request refused: storemon accepts changes only from its own pages and from "
            "clients that send no Origin (curl, scripts), whatever credentials the request carries"
        )
    configured = tokens(config)
    if configured:
        if request.path not in OPEN_PATHS and not _token_ok(configured):
            raise _unauthorized()
        return
    open_mode = config.get("STOREMON_ALLOW_OPEN") == "1"
    if not open_mode and not _host_allowed(request.host, config.get("STOREMON_ALLOWED_HOSTS", "")):
        raise Forbidden(
            f"Host {request.host!r} is not this machine; without API tokens storemon answers loopback "
            "names only (add names to STOREMON_ALLOWED_HOSTS, or set STOREMON_API_TOKENS)"
        )


def _token_ok(configured: list[str]) -> bool:
    given = _presented_token()
    if given is None:
        return False
    given_bytes = given.encode("utf-8", "surrogateescape")
    ok = False
    for token in configured:  # no early exit: the time taken does not depend on which matched
        ok |= hmac.compare_digest(given_bytes, token.encode("utf-8"))
    return ok


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        return password or None
    return None


def _unauthorized() -> Unauthorized:
    return Unauthorized(
        "this server needs an API token: send 'Authorization: Bearer <token>' "
        "(or HTTP Basic with the token as the password, e.g. curl -u :TOKEN)"
    )


# Sent with every 401: a browser shows its login prompt for Basic; API clients see Bearer.
CHALLENGES = ('Bearer realm="storemon"', 'Basic realm="storemon", charset="UTF-8"')


def _state_changing() -> bool:
    return request.method not in SAFE_METHODS or (
        request.method == "GET" and request.path.rstrip("/") in STATE_CHANGING_GET
    )


def _same_origin() -> bool:
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        return False
    for header in ("Origin", "Referer"):
        value = request.headers.get(header)
        if value is None:
            continue
        if value == "null":
            return False
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != request.host.lower():
            return False
    return True


def _host_allowed(host: str, extra: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name in LOOPBACK_NAMES or name in {h.strip().lower() for h in extra.split(",") if h.strip()}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_bind(bind: str) -> bool:
    """``127.0.0.1:8000``, ``[::1]:8000``, ``localhost:8000`` and ``unix:/path`` are loopback."""
    if bind.startswith("unix:") or bind.startswith("fd://"):
        return True
    host = bind.rsplit(":", 1)[0] if ":" in bind and not bind.endswith("]") else bind
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(binds: list[str] | str, environ) -> None:
    """Refuse to serve beyond this machine without tokens (unless STOREMON_ALLOW_OPEN=1)."""
    binds = [binds] if isinstance(binds, str) else list(binds)
    configured = tokens({"STOREMON_API_TOKENS": environ.get("STOREMON_API_TOKENS")})
    if configured or environ.get("STOREMON_ALLOW_OPEN") == "1":
        return
    outside = [b for b in binds if not is_loopback_bind(b)]
    if outside:
        raise ConfigError(
            f"refusing to serve on {', '.join(outside)} without API tokens: anyone who can reach it could "
            "rewrite the data. Set STOREMON_API_TOKENS (recommended) or STOREMON_ALLOW_OPEN=1."
        )


# What a browser may do with storemon's answers. Scripts, styles, images, fetches and fonts come
# from this server only; no inline script or style attribute runs (the pages and /docs load
# theirs from files); no plugins, no <base>, forms post only here; and no page may be framed,
# on this site or another (clickjacking: a framed overview turned one click into a POST).
CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(**changed: str) -> str:
    """The policy of :data:`CSP_DIRECTIVES`, with some directives changed by keyword
    (``img_src="'self' data:"``)."""
    directives = {**CSP_DIRECTIVES, **{name.replace("_", "-"): value for name, value in changed.items()}}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONTENT_SECURITY_POLICY = content_security_policy()
BROWSER_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",  # a CSV or JSON answer is never run as a script or page
    "Referrer-Policy": "same-origin",
}


def browser_headers(response):
    """Add :data:`BROWSER_HEADERS` to every response (JSON, CSV and errors too; a header the
    view set itself is kept: ``/docs`` sets its own policy)."""
    for name, value in BROWSER_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
