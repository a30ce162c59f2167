"""Broadcast latency and server memory while one client stops reading (SPEC 7.4, 11).

One sender broadcasts fixed-size messages on a fixed schedule to N reading clients, optionally with
one more client that never reads (a raw socket with a tiny receive buffer). Each reader records, per
message, the latency from the intended send time (no coordinated omission) and from the actual send
time. The server's RSS is sampled from ``/stats`` during the run.

Used by ``test_slow_consumer.py`` with short runs, and on its own for the issue's measurement::

    python -m tests.servers.slow_consumer_probe --kind tornado --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from dataclasses import asdict, dataclass, field

import aiohttp
import numpy as np

from tests.servers.wsclient import WsClient, login_cookie

SEND_STALL = 5.0  # seconds one send may block before the probe gives up


class ProbeStalled(AssertionError):
    """The server stopped reading the sender: the whole broadcast is stuck."""


@dataclass
class ProbeResult:
    stalled: bool
    sent: int
    received: list[int]  # per reader
    lost: int  # messages a reader never got (sum over readers)
    out_of_order: int
    p50_ms: float  # latency from the intended send time
    p99_ms: float
    max_ms: float
    p99_actual_ms: float  # latency from the actual send time
    rss_start: int
    rss_peak: int
    rss_end: int
    slow_consumer_closes: int
    stalled_end: str = ""  # what the stalled client saw when it finally read: "close 1008 ...", "reset", ...
    leave_lines: int = 0  # leave lines of the stalled client seen by the readers (sum)
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        mb = 1024 * 1024
        return (
            f"stalled={self.stalled} sent={self.sent} lost={self.lost} p50={self.p50_ms:.2f}ms "
            f"p99={self.p99_ms:.2f}ms (actual-send p99 {self.p99_actual_ms:.2f}ms) max={self.max_ms:.1f}ms "
            f"rss start/peak/end={self.rss_start / mb:.1f}/{self.rss_peak / mb:.1f}/{self.rss_end / mb:.1f} MiB "
            f"slow_consumer_closes={self.slow_consumer_closes} stalled_end={self.stalled_end!r}"
        )


async def _stats(session: aiohttp.ClientSession, base_url: str) -> dict[str, int]:
    async with session.get(base_url + "/stats") as resp:
        return await resp.json()


def _stalled_client(base_url: str, nickname: str) -> WsClient:
    return WsClient.connect(base_url, login_cookie(base_url, nickname), rcvbuf=4096)


def _read_stalled_end(client: WsClient, timeout: float = 3.0) -> str:
    """Read what the stalled client was sent, as fast as possible, until the end."""
    client.autopong = False
    try:
        while True:
            client.recv_message(timeout)
    except TimeoutError:
        return "open"
    except Exception as exc:  # ServerClosed or Dropped
        code = getattr(exc, "code", None)
        if code is not None:
            return f"close {code} {getattr(exc, 'reason', '')}".strip()
        return getattr(exc, "how", repr(exc))
    finally:
        client.sock.close()


async def run_probe(
    base_url: str,
    *,
    seconds: float = 2.0,
    rate: float = 500.0,
    size: int = 1024,
    readers: int = 3,
    stall: bool = True,
    read_stalled_after: float | None = None,
    tag: str = "",
) -> ProbeResult:
    """Run one broadcast; with ``stall`` one extra client never reads (until ``read_stalled_after``
    seconds after the start, if given, when it reads everything it was sent)."""
    tag = tag or str(int(time.time() * 1000) % 100000)
    jars = [aiohttp.CookieJar(unsafe=True) for _ in range(readers + 1)]
    sessions = [aiohttp.ClientSession(cookie_jar=jar) for jar in jars]
    stats_session = aiohttp.ClientSession()
    loop = asyncio.get_running_loop()
    stalled: WsClient | None = None
    try:
        sockets = []
        for i, session in enumerate(sessions):
            name = f"sender{tag}" if i == 0 else f"reader{i}-{tag}"
            async with session.post(base_url + "/login", data={"nickname": name}, allow_redirects=False) as resp:
                assert resp.status == 303, resp.status
            sockets.append(await session.ws_connect(base_url + "/chat", autoping=True, max_msg_size=0))
        sender, reader_sockets = sockets[0], sockets[1:]
        stalled_name = f"stalled{tag}"
        if stall:
            stalled = await loop.run_in_executor(None, _stalled_client, base_url, stalled_name)
        # Let the join lines settle, then drain them.
        await asyncio.sleep(0.2)
        for ws in reader_sockets:
            while True:
                try:
                    await ws.receive(timeout=0.05)
                except TimeoutError:
                    break

        count = int(seconds * rate)
        latencies: list[list[float]] = [[] for _ in reader_sockets]
        actual: list[list[float]] = [[] for _ in reader_sockets]
        seqs: list[list[int]] = [[] for _ in reader_sockets]
        leaves = [0 for _ in reader_sockets]
        sent_at: dict[int, float] = {}
        prefix = f"sender{tag}说："
        leave = f"~~~{stalled_name}离开了聊天室~~~"
        done = asyncio.Event()

        async def read(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            while len(seqs[i]) < count:
                try:
                    msg = await ws.receive(timeout=max(5.0, seconds))
                except TimeoutError:
                    return
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                now = time.perf_counter()
                text = msg.data
                if text == leave:
                    leaves[i] += 1
                    continue
                if not text.startswith(prefix):
                    continue
                seq_s, intended_s, _ = text[len(prefix) :].split(" ", 2)
                seq = int(seq_s)
                seqs[i].append(seq)
                latencies[i].append(now - float(intended_s))
                actual[i].append(now - sent_at.get(seq, float(intended_s)))

        rss = [(await _stats(stats_session, base_url))["rss_bytes"]]

        async def sample() -> None:
            while not done.is_set():
                rss.append((await _stats(stats_session, base_url))["rss_bytes"])
                await asyncio.sleep(0.1)

        async def read_stalled_later() -> str:
            assert stalled is not None and read_stalled_after is not None
            await asyncio.sleep(read_stalled_after)
            return await loop.run_in_executor(None, _read_stalled_end, stalled)

        stalled_reader = asyncio.ensure_future(read_stalled_later()) if stall and read_stalled_after else None
        readers_done = asyncio.gather(*(read(i, ws) for i, ws in enumerate(reader_sockets)))
        sampler = asyncio.ensure_future(sample())
        start = time.perf_counter() + 0.05
        pad = "x" * size
        for seq in range(count):
            intended = start + seq / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = f"{seq} {intended:.6f} "
            sent_at[seq] = time.perf_counter()
            try:
                await asyncio.wait_for(sender.send_str(body + pad[: max(0, size - len(body))]), SEND_STALL)
            except TimeoutError:
                raise ProbeStalled(
                    f"sending message {seq} blocked for {SEND_STALL:g} s: the server stopped reading the "
                    "sender (does its broadcast wait on the stalled client?)"
                ) from None
        await readers_done
        # Give the leave line of the stalled client a moment, if it is not in yet.
        if stall:
            for i, ws in enumerate(reader_sockets):
                if not leaves[i]:
                    try:
                        msg = await ws.receive(timeout=3)
                        if msg.type == aiohttp.WSMsgType.TEXT and msg.data == leave:
                            leaves[i] += 1
                    except TimeoutError:
                        pass
        done.set()
        await sampler
        rss_end = (await _stats(stats_session, base_url))["rss_bytes"]
        final = await _stats(stats_session, base_url)
        stalled_end = ""
        if stalled_reader is not None:
            stalled_end = await stalled_reader
        elif stalled is not None:
            stalled_end = await loop.run_in_executor(None, _read_stalled_end, stalled, 0.5)
        all_lat = np.array([x for xs in latencies for x in xs]) * 1000 if any(latencies) else np.array([0.0])
        all_actual = np.array([x for xs in actual for x in xs]) * 1000 if any(actual) else np.array([0.0])
        return ProbeResult(
            stalled=stall,
            sent=count,
            received=[len(s) for s in seqs],
            lost=sum(count - len(set(s)) for s in seqs),
            out_of_order=sum(sum(1 for a, b in itertools.pairwise(s) if b < a) for s in seqs),
            p50_ms=float(np.percentile(all_lat, 50)),
            p99_ms=float(np.percentile(all_lat, 99)),
            max_ms=float(all_lat.max()),
            p99_actual_ms=float(np.percentile(all_actual, 99)),
            rss_start=rss[0],
            rss_peak=max(rss),
            rss_end=rss_end,
            slow_consumer_closes=final["slow_consumer_closes"],
            stalled_end=stalled_end,
            leave_lines=sum(leaves),
        )
    finally:
        for ws in locals().get("sockets", []):
            await ws.close()
        for session in [*sessions, stats_session]:
            await session.close()
        if stalled is not None:
            stalled.sock.close()


def main() -> None:
    from wsbench.target import option_flags, reference_server_argv, start_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["tornado", "aiohttp"], required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--size", type=int, default=1024, help="message bytes")
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--send-buffer-limit", type=int, default=None, help="server option (default: its default)")
    args = parser.parse_args()
    flags = option_flags({"send_buffer_limit": args.send_buffer_limit})
    with start_server(reference_server_argv(args.kind, flags), label=args.kind) as server:
        results = {}
        for stall in (False, True):
            result = asyncio.run(
                run_probe(
                    server.url,
                    seconds=args.seconds,
                    rate=args.rate,
                    size=args.size,
                    readers=args.readers,
                    stall=stall,
                    tag=f"{int(stall)}{int(time.time()) % 1000}",
                )
            )
            print(f"{args.kind}: {result.summary()}", flush=True)
            results["with_stalled_client" if stall else "without_stalled_client"] = asdict(result)
        print(json.dumps({"kind": args.kind, "args": vars(args), **results}))


if __name__ == "__main__":
    main()
