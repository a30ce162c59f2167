"""The server the engine loads: its URLs, the HTTP session, whether its process lives, its ``/stats``.

While the run goes, :meth:`ServerEndpoint.sample_stats` polls ``GET /stats`` once an interval; the
latest sample (:func:`wsbench.core.server_stats.keep`) goes into each interval record's ``server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from wsbench.core import server_stats
from wsbench.core.results import ResultsWriter
from wsbench.target import ServerProcess


@dataclass
class ServerEndpoint:
    http_url: str
    ws_url: str
    server: ServerProcess | None  # the process wsbench started, if it did
    stats_ok: bool  # ask /stats (the scenario's ``stats:``; off once the server says it has none)
    session: aiohttp.ClientSession | None = None
    last_stats: dict[str, Any] | None = None

    @classmethod
    def of(cls, http_url: str, server: ServerProcess | None, stats: bool) -> ServerEndpoint:
        http_url = http_url.rstrip("/")
        return cls(http_url, "ws" + http_url[len("http") :] + "/chat", server, stats)

    def open_session(self, timeout_s: float) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))
        return self.session

    async def close_session(self) -> None:
        if self.session is not None and not self.session.closed:
            await self.session.close()

    def death(self) -> str | None:
        """Why the server wsbench started is gone (``None``: it lives, or wsbench did not start it)."""
        if self.server is not None and not self.server.alive():
            return self.server.death_message()
        return None

    async def sample_stats(
        self, writer: ResultsWriter, t_s: Callable[[], float], interval_s: float, finished: asyncio.Event
    ) -> None:
        """Poll ``/stats`` every ``interval_s`` until ``finished``; warn once when it is not there."""
        assert self.session is not None
        misses = 0
        timeout = aiohttp.ClientTimeout(total=max(interval_s, 0.5))
        while not finished.is_set() and self.stats_ok:
            try:
                async with self.session.get(self.http_url + "/stats", timeout=timeout) as resp:
                    if resp.status == 200:
                        data = await resp.json(content_type=None)
                        if isinstance(data, dict):
                            self.last_stats = server_stats.keep(data)
                            self.last_stats["t_s"] = round(t_s(), 3)
                            misses = 0
                    elif resp.status == 404:
                        self.stats_ok = False
                        writer.event("warning", t_s(), detail="the server offers no /stats")
                        return
            except (TimeoutError, aiohttp.ClientError, ValueError):
                misses += 1
                if misses == 3:
                    writer.event("warning", t_s(), detail="/stats did not answer three times in a row")
            await asyncio.sleep(interval_s)
