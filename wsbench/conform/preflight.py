"""Before the cases: is the target a SPEC.md chat server at all, and may this process open enough files?

A gate pointed at the wrong address (a static file server, another application) would otherwise report
every case as failed. One login and one ``/chat`` handshake decide it: when they do not succeed, the
target is reported once, up front, with what was tried and what came back, and no case runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wsbench.conform.checks import MAX_FILL
from wsbench.conform.http_client import Endpoint, HttpResponse, login
from wsbench.conform.session import unique_nick
from wsbench.conform.wire import ws_connect
from wsbench.errors import NotAChatServer
from wsbench.fdlimit import OpenFiles, ensure_open_files, needed_for_clients

if TYPE_CHECKING:
    from wsbench.conform.runner import Target

#: connections the concurrent cases hold at most, all together (the runner's budget)
CONCURRENT_BUDGET = 60


def _answer(response: HttpResponse) -> str:
    if response.status is None:
        return response.describe()
    reason = f" {response.reason}" if response.reason else ""
    return f"{response.status}{reason}"


async def chat_preflight(endpoint: Endpoint) -> None:
    """Raise :class:`NotAChatServer` unless ``POST /login`` sets a nickname cookie (SPEC 3.4) and the
    ``/chat`` upgrade with it is accepted (SPEC 6.6)."""
    nick = unique_nick("pf")
    result = await login(endpoint, nick)
    tried = f"POST /login with nickname={nick} answered {_answer(result.response)}"
    if result.cookie is None:
        handshake = await ws_connect(endpoint)
        if handshake.ws is not None:
            with contextlib.suppress(Exception):
                await handshake.ws.aclose()
        raise NotAChatServer(
            f"{endpoint.url} does not speak SPEC.md (the chat protocol), so no case was run: {tried} without "
            f"a nickname cookie (SPEC 3.4 expects 303 with one), and a WebSocket upgrade of /chat answered "
            f"{_answer(handshake.response)}. Is this the right address?"
        )
    handshake = await ws_connect(endpoint, cookie=result.cookie)
    if handshake.ws is not None:
        with contextlib.suppress(Exception):
            await handshake.ws.aclose()
        return
    raise NotAChatServer(
        f"{endpoint.url} does not speak SPEC.md (the chat protocol), so no case was run: {tried} with a nickname "
        f"cookie, but the WebSocket upgrade of /chat with that cookie answered {_answer(handshake.response)} "
        "(SPEC 6.6 expects 101)"
    )


def ensure_open_files_for_gate(targets: Sequence[Target]) -> OpenFiles:
    """The gate's descriptors: the concurrent cases' budget or the max-connections fill, whichever is more
    (they never overlap); a server wsbench starts inherits the limit and sees the same connections."""
    fill = max((min(t.options.max_connections, MAX_FILL) + 2 for t in targets), default=0)
    needed = needed_for_clients(max(CONCURRENT_BUDGET, fill))
    return ensure_open_files(needed, "the conformance gate", fewer="")
