"""Server processes a case starts of its own (SPEC 15: start-up options, ``--host ::1``, a server with
``--compression``): run to the end, or until the listening line, and always stopped by PID.

One copy of "start the target's command with extra flags", "stop it (SIGTERM, then SIGKILL)" and the
SPEC 15.2 judgement of a refused start, for the cases of :mod:`~wsbench.conform.checks` and
:mod:`~wsbench.conform.spawned_checks`.
"""

from __future__ import annotations

import asyncio
import contextlib

from wsbench.conform.http_client import Endpoint, login
from wsbench.conform.session import CaseContext, CaseFailed, CaseSkipped
from wsbench.conform.wire import WsConnection, ws_connect

#: How long a started server may take to print its listening line or exit (Python imports under load).
START_TIMEOUT = 15.0
#: How long a server has to exit after SIGTERM before it is killed.
STOP_GRACE = 5.0


def server_argv(ctx: CaseContext) -> list[str]:
    """The target's command (flags may be appended); the case is skipped for a ``--url`` target."""
    if ctx.server is None:
        raise CaseSkipped("needs a server command wsbench can start (--server or --server-cmd)")
    return list(ctx.server.argv)


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after STOP_GRACE (ours, by PID)."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def run(argv: list[str], wait_listening: bool = False) -> tuple[int | None, str, str]:
    """Run a server command: (exit status, stdout, stderr). ``wait_listening``: stop it by PID (SIGTERM)
    once its first line is out, and return that line as stdout."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        if wait_listening:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()  # ours, by PID
            _, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
            return proc.returncode, line.decode(errors="replace"), err.decode(errors="replace")
        out, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # ours, by PID
        await proc.wait()
        return None, "", f"still running after {START_TIMEOUT:g} s"


def refused_start(code: int | None, out: str, err: str) -> tuple[bool, list[str]]:
    """SPEC 15.2 for a bad start: exit status 2, a message on stderr (its last line; a usage block before
    it is fine), no traceback, no listening line. (good, problems)"""
    problems = []
    if code != 2:
        problems.append(f"exit status {code}" if code is not None else err)
    if not [line for line in err.splitlines() if line.strip()]:
        problems.append("nothing on stderr")
    if "Traceback" in err:
        problems.append("a traceback")
    if "listening on" in out:
        problems.append("it printed a listening line")
    return not problems, problems


class OwnServer:
    """A server of the case's own (argv + extra flags) as ``async with``: its endpoint; stopped by PID,
    with every connection it gave, when the case ends."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.opened: list[WsConnection] = []

    async def __aenter__(self) -> Endpoint:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            raise CaseFailed(f"{' '.join(self.argv[-4:])}: no listening line within {START_TIMEOUT:g} s") from None
        text = line.decode(errors="replace").strip()
        try:
            return Endpoint.from_url(text.removeprefix("listening on ").strip())
        except ValueError:
            raise CaseFailed(f"first line {text!r}, not 'listening on http://HOST:PORT'") from None

    async def join(self, endpoint: Endpoint, nick: str, compress: bool) -> WsConnection:
        result = await login(endpoint, nick)
        if result.cookie is None:
            raise CaseFailed(f"cannot log in on the --compression server: {result.response.describe()}")
        offer = [("Sec-WebSocket-Extensions", "permessage-deflate")] if compress else []
        hs = await ws_connect(endpoint, cookie=result.cookie, extra_headers=offer)
        if hs.ws is None:
            raise CaseFailed(f"/chat on the --compression server: {hs.response.describe()}")
        self.opened.append(hs.ws)
        if compress and "permessage-deflate" not in (hs.response.header("sec-websocket-extensions") or ""):
            raise CaseFailed("the server started with --compression did not negotiate permessage-deflate")
        return hs.ws

    async def __aexit__(self, *exc: object) -> None:
        for ws in self.opened:
            with contextlib.suppress(Exception):
                await ws.aclose()
        if self.proc is not None:
            await stop(self.proc)
