"""The pages of the aiohttp reference server (SPEC 2-5, 16.2): three parts of ``ChatServer``.

:class:`PagesPolicy` serves the pages (templates, ``/stats``, the static-path guard),
:class:`LoginPolicy` decides logins (the form, the nickname rules and hints, "is this nickname
online", the body bound) and :class:`CookiePolicy` signs and checks the nickname cookie (aiohttp has
no signed cookies of its own). One method per behaviour, as everywhere in ``ChatServer``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .hardening import LOGIN_BODY_LIMIT, MAX_STATIC_PATH, REQUEST_BODY_TIMEOUT, Throttle
from .policy import COOKIE_MAX_AGE_DAYS, HINT_ENCODING, HINT_IN_USE, NICKNAME_COOKIE, check_nickname

if TYPE_CHECKING:
    from .aiohttp_room import Connection


def first_urlencoded_field(body: bytes, name: bytes) -> bytes | None:
    """The percent-decoded value of the first ``name`` field of an urlencoded body, as bytes."""
    for field in body.split(b"&"):
        key, _, value = field.partition(b"=")
        if urllib.parse.unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))
    return None


class PagesPolicy:
    """The pages: ``/`` (SPEC 4), ``/login``'s form (3.1), ``/stats`` (5) and the static files (16.2)."""

    _templates: dict[str, str]

    @web.middleware
    async def guard_static(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """SPEC 16.2: a static path that cannot name a file (NUL, too long, an OS error) is 404, not 500."""
        if not request.path.startswith("/static/"):
            return await handler(request)
        if len(request.path) > MAX_STATIC_PATH or "\0" in request.path:
            raise web.HTTPNotFound()
        try:
            return await handler(request)
        except (OSError, ValueError):
            raise web.HTTPNotFound() from None

    def render(self, name: str, status: int = 200, **values: str) -> web.Response:
        """Fill ``{{ key }}`` placeholders of a shared template, HTML-escaped (SPEC 3.6)."""
        page = self._templates[name]
        for key, value in values.items():
            page = page.replace("{{ " + key + " }}", html.escape(value))
        return web.Response(status=status, text=page, content_type="text/html", charset="utf-8")

    async def stats_page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(self.stats()), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def login_page(self, request: web.Request) -> web.Response:
        return self.render("login.html", hint="")

    async def chat_page(self, request: web.Request) -> web.Response:
        nickname = self.authenticate(request)
        if nickname is None:
            return web.Response(status=303, headers={"Location": "/login"})
        return self.render("chat.html", nickname=nickname)


class LoginPolicy:
    """Who may log in (SPEC 3): the form, the nickname rules and hints, the body bound."""

    room: dict[str, Connection]
    throttle: Throttle

    async def login(self, request: web.Request) -> web.Response:
        limit = self.login_body_limit()
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        try:
            async with asyncio.timeout(REQUEST_BODY_TIMEOUT):  # SPEC 16.1
                raw = await self.form_nickname(request)
        except UnicodeDecodeError:
            return self.render("login.html", status=400, hint=HINT_ENCODING)
        except TimeoutError:
            self.throttle.warn("slow body", "client sent a /login body slower than %g s: closed", REQUEST_BODY_TIMEOUT)
            raise web.HTTPRequestTimeout() from None
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except (ConnectionError, HttpProcessingError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            # the client went away, or its body is cut short: nobody to answer (SPEC 16.4: no traceback)
            self.throttle.warn("body", "client /login body ended early or was malformed")
            raise web.HTTPBadRequest() from None
        except (ValueError, LookupError, TypeError, AssertionError):
            # a malformed multipart body (aiohttp's parser raises these)
            return self.render("login.html", status=400, hint=HINT_ENCODING)
        nickname, hint = self.validate_nickname(raw)
        if nickname is None:
            return self.render("login.html", status=400, hint=hint)
        if self.nickname_in_use(nickname):
            return self.render("login.html", status=409, hint=HINT_IN_USE)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(NICKNAME_COOKIE, self.sign_nickname(nickname), httponly=True, samesite="Lax", path="/")
        return response

    async def form_nickname(self, request: web.Request) -> str | None:
        """The first ``nickname`` form field (SPEC 3.2); raises UnicodeDecodeError when it is not UTF-8.

        Parsed here, not with ``request.post()``: that decodes every field with errors="replace" (bad
        bytes become U+FFFD instead of a 400) or with a multipart part's declared charset (latin-1
        bytes become text), and an invalid *other* field must not refuse a valid nickname.
        """
        if request.content_type == "application/x-www-form-urlencoded":
            value = first_urlencoded_field(await request.read(), b"nickname")
        elif request.content_type.startswith("multipart/"):
            value = await self.first_multipart_field(request, "nickname")
        else:
            await request.read()  # no form: no nickname, but the body is bounded all the same (3.9)
            return None
        return None if value is None else value.decode("utf-8")

    async def first_multipart_field(self, request: web.Request, name: str) -> bytes | None:
        """The raw bytes of the first part named ``name``; the whole body counted against 3.9's bound."""
        reader = await request.multipart()
        total = 0
        found: bytes | None = None
        while True:
            part = await reader.next()
            if part is None:
                return found
            if not isinstance(part, aiohttp.BodyPartReader):
                raise ValueError("nested multipart")
            data = bytearray()
            while chunk := await part.read_chunk(4096):
                total += len(chunk)
                if total > self.login_body_limit():
                    raise web.HTTPRequestEntityTooLarge(max_size=self.login_body_limit(), actual_size=total)
                data += chunk
            if found is None and part.name == name:
                found = bytes(data)

    def validate_nickname(self, raw: str | None) -> tuple[str | None, str]:
        """(nickname, "") when valid, else (None, hint). SPEC 3.2."""
        return check_nickname(raw)

    def nickname_in_use(self, nickname: str) -> bool:
        return nickname in self.room

    def login_body_limit(self) -> int:
        """Largest ``POST /login`` body (SPEC 3.9)."""
        return LOGIN_BODY_LIMIT


class CookiePolicy:
    """The signed nickname cookie (SPEC 3.4) and who a request is logged in as (4.1, 6.2)."""

    _cookie_key: bytes

    def _mac(self, payload: str) -> str:
        """The MAC of an ASCII payload (``authenticate`` refuses any other cookie before this)."""
        digest = hmac.new(self._cookie_key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign_nickname(self, nickname: str, issued: int | None = None) -> str:
        """``base64url(nickname).ISSUED.base64url(HMAC-SHA256)``: aiohttp has no signed cookies of its own.

        ISSUED is the login time (Unix seconds), covered by the MAC, for SPEC 3.4's 31-day lifetime.
        (aiohttp_session would add a session store; a stdlib HMAC is all SPEC 3.4 needs.)
        """
        payload = base64.urlsafe_b64encode(nickname.encode("utf-8")).rstrip(b"=").decode("ascii")
        signed = f"{payload}.{int(time.time()) if issued is None else issued}"
        return f"{signed}.{self._mac(signed)}"

    def authenticate(self, request: web.Request) -> str | None:
        """The nickname from a valid signed cookie, else None (SPEC 4.1, 6.2)."""
        return self.cookie_nickname(request.cookies.get(NICKNAME_COOKIE, ""), time.time())

    def cookie_nickname(self, value: str, now: float) -> str | None:
        """The nickname of a signed cookie value that is at most COOKIE_MAX_AGE_DAYS old (SPEC 3.4)."""
        signed, dot, mac = value.rpartition(".")
        payload, dot2, issued = signed.partition(".")
        if not dot or not dot2 or not payload or not issued.isdigit() or not value.isascii():
            return None
        if not hmac.compare_digest(self._mac(signed), mac):
            return None
        if now - int(issued) > COOKIE_MAX_AGE_DAYS * 86400:
            return None
        try:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
