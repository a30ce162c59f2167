"""The pages of the Tornado reference server (SPEC 2-4): request handlers and the login policy.

The handlers are thin and delegate to the server (:class:`~wsbench_servers.tornado_server.ChatServer`);
:class:`LoginPolicy` is the part of it that decides logins: the nickname rules and hints (3.2), "is
this nickname online" (3.3), the signed cookie (4.1) and the login body bound (3.9). A 405 carries
``Allow`` and ``HEAD`` is answered like ``GET`` (SPEC 2.2).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import tornado.httputil
import tornado.web

from .hardening import LOGIN_BODY_LIMIT, MAX_STATIC_PATH
from .policy import (
    COOKIE_MAX_AGE_DAYS,
    HINT_ENCODING,
    HINT_IN_USE,
    METHODS_LOGIN,
    METHODS_PAGE,
    NICKNAME_COOKIE,
    check_nickname,
)

if TYPE_CHECKING:
    from .tornado_server import ChatServer, ChatSocketHandler


class LoginPolicy:
    """Who may log in, and as whom (SPEC 3, 4): part of ``ChatServer`` (one method per behaviour)."""

    room: dict[str, ChatSocketHandler]

    def validate_nickname(self, raw: str | None) -> tuple[str | None, str]:
        """(nickname, "") when valid, else (None, hint). SPEC 3.2."""
        return check_nickname(raw)

    def nickname_in_use(self, nickname: str) -> bool:
        return nickname in self.room

    def authenticate(self, handler: tornado.web.RequestHandler) -> str | None:
        """The nickname from a valid signed cookie, else None (SPEC 4.1, 6.2)."""
        value = handler.get_signed_cookie(NICKNAME_COOKIE, max_age_days=COOKIE_MAX_AGE_DAYS)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def login_body_limit(self) -> int:
        """Largest ``POST /login`` body (SPEC 3.9)."""
        return LOGIN_BODY_LIMIT


class AllowMixin:
    """SPEC 2.2: a 405 names the methods of the resource in ``Allow``."""

    ALLOW: tuple[str, ...] = ()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.ALLOW))  # type: ignore[attr-defined]
        super().write_error(status_code, **kwargs)  # type: ignore[misc]


class ServerHandler(AllowMixin, tornado.web.RequestHandler):
    server: ChatServer
    ALLOW = METHODS_PAGE

    def initialize(self, server: ChatServer) -> None:
        self.server = server

    def prepare(self) -> None:
        if self.request.method not in self.ALLOW:
            raise tornado.web.HTTPError(405)

    def head(self, *args: Any) -> Awaitable[None] | None:
        """SPEC 2.2: HEAD as GET (Tornado writes no body for a HEAD request)."""
        return self.get(*args)  # type: ignore[attr-defined, no-any-return]


class StaticHandler(AllowMixin, tornado.web.StaticFileHandler):
    """Static files. SPEC 16.2: a path that cannot name a file (NUL, too long, an OS error) is 404."""

    ALLOW = METHODS_PAGE

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if "\0" in absolute_path or len(absolute_path) > len(root) + MAX_STATIC_PATH:
            raise tornado.web.HTTPError(404)
        try:
            return super().validate_absolute_path(root, absolute_path)
        except (OSError, ValueError):
            raise tornado.web.HTTPError(404) from None


@tornado.web.stream_request_body
class LoginHandler(ServerHandler):
    """``/login``. The body is streamed in and counted, so that SPEC 3.9's bound gives a 413 (with a
    whole-connection ``max_body_size`` Tornado would answer a bare 400)."""

    ALLOW = METHODS_LOGIN
    body: bytearray

    def prepare(self) -> None:
        super().prepare()
        self.body = bytearray()
        if self.request.method != "POST":
            return
        declared = self.request.headers.get("Content-Length")
        limit = self.server.login_body_limit()
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            self.too_large()
            return
        # Tornado's own bound stays as a safety net above ours (it would answer a bare 400)
        self.request.connection.set_max_body_size(2 * limit)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self.body += chunk
        if len(self.body) > self.server.login_body_limit():
            self.too_large()

    def too_large(self) -> None:
        self.set_status(413)
        self.set_header("Connection", "close")
        self.finish(f"Payload Too Large: a login form is at most {self.server.login_body_limit()} bytes\n")

    def get(self) -> None:
        self.render("login.html", hint="")

    def post(self) -> None:
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        try:
            tornado.httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""), bytes(self.body), arguments, files, self.request.headers
            )
        except tornado.httputil.HTTPInputError:
            arguments = {}  # a malformed form has no nickname field: 400 below
        # Not get_body_argument(): it turns control characters into spaces, hiding them from 3.2.
        values = arguments.get("nickname") or [b""]
        try:
            raw = values[0].decode("utf-8")
        except UnicodeDecodeError:
            self.set_status(400)
            self.render("login.html", hint=HINT_ENCODING)
            return
        nickname, hint = self.server.validate_nickname(raw)
        if nickname is None:
            self.set_status(400)
            self.render("login.html", hint=hint)
        elif self.server.nickname_in_use(nickname):
            self.set_status(409)
            self.render("login.html", hint=HINT_IN_USE)
        else:
            self.set_signed_cookie(
                NICKNAME_COOKIE, nickname, expires_days=None, httponly=True, samesite="Lax", path="/"
            )
            self.redirect("/", status=303)


class ChatPageHandler(ServerHandler):
    def get(self) -> None:
        nickname = self.server.authenticate(self)
        if nickname is None:
            self.redirect("/login", status=303)
        else:
            self.render("chat.html", nickname=nickname)


class StatsHandler(ServerHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.server.stats()))
