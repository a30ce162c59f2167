"""Pure policy both reference servers share (SPEC 3.2, 3.4, 3.7, 6.1, 6.3, 8.4): data in, decision out.

No I/O and no protocol handling here (that stays separate per server, so one framing bug cannot hide in
both); only the rules SPEC.md states as lists and comparisons, written once so the two servers cannot
drift apart on them.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import NamedTuple

#: SPEC 3.2: the Unicode White_Space property, exactly (not Python's ``str.isspace``, which adds
#: U+001C-U+001F, nor JavaScript's ``trim``, which adds U+FEFF).
WHITE_SPACE = frozenset(
    [
        *map(chr, range(0x09, 0x0E)),
        "\u0020",
        "\u0085",
        "\u00a0",
        "\u1680",
        *map(chr, range(0x2000, 0x200B)),
        "\u2028",
        "\u2029",
        "\u202f",
        "\u205f",
        "\u3000",
    ]
)
WHITE_SPACE_CHARS = "".join(sorted(WHITE_SPACE))

#: SPEC 3.4: a signed cookie older than this is rejected like a forged one.
COOKIE_MAX_AGE_DAYS = 31

#: SPEC 8.4: close codes a client may send (RFC 6455 §7.4, IANA 1012-1014); others are answered 1002.
VALID_CLOSE_CODES = frozenset([1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)])

#: SPEC 2.2: the methods of each resource (the ``Allow`` header of a 405).
METHODS_LOGIN = ("GET", "HEAD", "POST")
METHODS_PAGE = ("GET", "HEAD")
METHODS_CHAT = ("GET",)

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_RE = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9._~!$&'()*+,;=%-]+)$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")


#: SPEC 3.4: the name of the login cookie.
NICKNAME_COOKIE = "nickname"
#: SPEC 3.2: the longest nickname, in code points, after stripping.
MAX_NICKNAME_LENGTH = 32
#: The login form's hints (SPEC 3.2: "a hint saying what is wrong"; 3.3's words are SPEC's own).
HINT_EMPTY = "请输入昵称"
HINT_TOO_LONG = f"昵称最多{MAX_NICKNAME_LENGTH}个字符"
HINT_CONTROL = "昵称不能包含控制字符"
HINT_ENCODING = "昵称不是有效的UTF-8文本"
HINT_IN_USE = "昵称已被使用，请更换昵称"


def strip_nickname(raw: str) -> str:
    """SPEC 3.2: strip leading and trailing White_Space code points, nothing else."""
    return raw.strip(WHITE_SPACE_CHARS)


def check_nickname(raw: str | None) -> tuple[str | None, str]:
    """SPEC 3.2: (nickname, "") when the form value makes a valid nickname, else (None, hint)."""
    nickname = strip_nickname(raw or "")
    if not nickname:
        return None, HINT_EMPTY
    if len(nickname) > MAX_NICKNAME_LENGTH:
        return None, HINT_TOO_LONG
    if any(unicodedata.category(ch) == "Cc" for ch in nickname):
        return None, HINT_CONTROL
    return nickname, ""


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int | None  # None: not written (the scheme's default applies)

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]


def _host_port(text: str) -> tuple[str, int | None] | None:
    """``host`` or ``host:port`` (IPv6 in brackets), lower-cased; None when malformed."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, rest = text, ""
        else:
            rest = ":" + port_text
    if not host or not _HOST_RE.match(host):
        return None
    if not rest:
        return host, None
    if not rest.startswith(":") or not _PORT_RE.match(rest[1:]):
        return None
    port = int(rest[1:])
    return (host, port) if port <= 65535 else None


def parse_origin(value: str) -> Origin | None:
    """SPEC 6.3: one serialized http(s) origin, optionally with one trailing ``/``; None otherwise."""
    text = value.strip().lower()
    if text.endswith("/"):
        text = text[:-1]
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in DEFAULT_PORTS or not rest:
        return None
    if any(ch in rest for ch in "/?#@ ,\t"):
        return None
    parsed = _host_port(rest)
    if parsed is None:
        return None
    return Origin(scheme, parsed[0], parsed[1])


def canonical_origin(origin: Origin) -> str:
    """``scheme://host:port`` with the port always written (allow-list comparison, SPEC 6.3)."""
    return f"{origin.scheme}://{origin.host}:{origin.effective_port}"


def serialized_origin(origin: Origin) -> str:
    """The origin as a browser sends it (RFC 6454 §6.2): the port left out when it is the scheme's default."""
    port = "" if origin.effective_port == DEFAULT_PORTS[origin.scheme] else f":{origin.effective_port}"
    return f"{origin.scheme}://{origin.host}{port}"


def origin_allowed(values: list[str], host_header: str, allowed: tuple[str, ...]) -> bool:
    """SPEC 6.3 for the ``Origin`` header values of one request (``[]``: no Origin, allowed).

    ``allowed`` holds allow-list entries in :func:`canonical_origin` form.
    """
    if not values:
        return True
    if len(values) != 1:
        return False
    origin = parse_origin(values[0])
    if origin is None:
        return False
    own = _host_port(host_header.strip().lower())
    if own is not None:
        own_port = own[1] if own[1] is not None else DEFAULT_PORTS[origin.scheme]
        if own[0] == origin.host and own_port == origin.effective_port:
            return True
    return canonical_origin(origin) in allowed


def has_token(header: str | None, token: str) -> bool:
    """A comma-separated header (``Connection``) holds ``token``, ASCII case-insensitively."""
    return token in (part.strip().lower() for part in (header or "").split(","))


def valid_websocket_key(values: list[str]) -> bool:
    """SPEC 6.1 e: one ``Sec-WebSocket-Key``, the base64 of 16 bytes (RFC 6455 §4.2.1)."""
    if len(values) != 1:
        return False
    key = values[0].strip()
    if len(key) != 24 or not key.endswith("=="):
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False
