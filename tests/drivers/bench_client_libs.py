"""Which WebSocket client library receives broadcast frames cheapest? (a measurement, not a test)

    taskset -c 0 python tests/fixtures/relay.py --port 8899 &
    taskset -c 1 python tests/drivers/bench_client_libs.py --url http://127.0.0.1:8899 --lib picows

N clients log in and open /chat; one more client sends ``--rate`` messages per second for
``--seconds``; every receiver keeps each frame's bytes and a monotonic timestamp (the minimum any
measuring client must do). Prints the CPU time of this process per received frame.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

import aiohttp


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def login(session: aiohttp.ClientSession, url: str, nick: str) -> str:
    async with session.post(url + "/login", data={"nickname": nick}, allow_redirects=False) as resp:
        return resp.cookies["nickname"].value


async def run(args: argparse.Namespace) -> None:
    frames: list[bytes] = []
    stamps: list[int] = []
    clock = time.monotonic_ns
    ws_url = "ws" + args.url[4:] + "/chat"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        cookies = [await login(session, args.url, f"b{i}") for i in range(args.clients + 1)]
        conns = []
        if args.lib == "picows":
            import picows

            class L(picows.WSListener):
                def on_ws_frame(self, transport, frame):
                    if frame.msg_type == picows.WSMsgType.TEXT:
                        frames.append(frame.get_payload_as_bytes())
                        stamps.append(clock())

            for c in cookies:
                t, _ = await picows.ws_connect(
                    L, ws_url, extra_headers={"Cookie": f"nickname={c}"}, use_aiofastnet=args.aiofastnet
                )
                conns.append(t)
            sender = conns.pop()

            def send(text: str) -> None:
                sender.send(picows.WSMsgType.TEXT, text.encode())
        else:

            async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        frames.append(msg.data)
                        stamps.append(clock())

            for c in cookies:
                ws = await session.ws_connect(ws_url, headers={"Cookie": f"nickname={c}"}, autoping=True)
                conns.append(ws)
            sender_ws = conns.pop()
            readers = [asyncio.ensure_future(reader(ws)) for ws in conns]

            def send(text: str) -> None:
                readers.append(asyncio.ensure_future(sender_ws.send_str(text)))

        await asyncio.sleep(1.0)
        frames.clear()
        stamps.clear()
        c0, t0 = cpu(), time.monotonic()
        n = int(args.rate * args.seconds)
        for k in range(n):
            due = t0 + k / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            send("m" * 100)
        await asyncio.sleep(0.5)
        used, wall = cpu() - c0, time.monotonic() - t0
        label = args.lib + ("" if args.aiofastnet or args.lib != "picows" else " (no aiofastnet)")
        print(
            f"{label}: {args.clients} clients, {len(frames)} frames in {wall:.1f}s: "
            f"{len(frames) / wall:,.0f}/s, CPU {used:.2f}s = {used / max(len(frames), 1) * 1e6:.2f} us/frame"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--lib", choices=["picows", "aiohttp"], default="picows")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument(
        "--no-aiofastnet", dest="aiofastnet", action="store_false", help="picows on the loop's own transport"
    )
    args = p.parse_args()
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            r.run(run(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
