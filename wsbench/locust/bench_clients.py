"""Which gevent-compatible WebSocket client receives frames cheapest? A measurement, not a test.

    python -m wsbench.locust.bench_clients                       # paced broadcast: 100 conns x 200 frames/s
    python -m wsbench.locust.bench_clients --conns 1 --frames 100000 --rate 0   # flooded

A minimal source (asyncio + uvloop, prebuilt frames, no protocol logic) accepts ``--conns`` WebSocket
connections, then sends every one the same ``--frames`` text frames of about 100 bytes carrying a
sequence number and the send time, ``--rate`` frames per second per connection (0: as fast as the
socket takes them). Each client library runs in its own process under gevent's monkey-patching, as
in Locust, one greenlet per connection, and decodes each frame and parses its timestamp. Reported:
the client process's CPU time (user + system) per received frame, from the moment all connections
are open to the last frame.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import resource
import subprocess
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLIENTS = ("frames", "websocket-client", "wsproto", "simple-websocket")


# -- the frame source ---------------------------------------------------------------------------------
def serve(conns: int, frames: int, rate: float) -> None:
    import asyncio

    import uvloop

    class Conn(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = b""
            self.ready = False
            self.writable = asyncio.Event()
            self.writable.set()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def data_received(self, data: bytes) -> None:
            if self.ready:
                return
            self.buf += data
            if b"\r\n\r\n" in self.buf:
                key = next(
                    line.split(b":", 1)[1].strip()
                    for line in self.buf.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                self.t.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                self.ready = True
                opened.append(self)
                if len(opened) == conns:
                    all_in.set()

        def pause_writing(self) -> None:
            self.writable.clear()

        def resume_writing(self) -> None:
            self.writable.set()

        def connection_lost(self, exc: Exception | None) -> None:
            self.writable.set()

    def frame(payload: bytes) -> bytes:
        n = len(payload)
        return bytes([0x81, n]) + payload if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big") + payload

    opened: list[Conn] = []
    all_in = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Conn, "127.0.0.1", 0)
        print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.wait_for(all_in.wait(), 60)
        await asyncio.sleep(0.2)
        pad = b"x" * 40
        sent = 0
        t0 = time.monotonic()
        while sent < frames:
            due = min(frames, int((time.monotonic() - t0) * rate) + 1) if rate > 0 else min(frames, sent + 200)
            if due > sent:
                chunk = b"".join(frame(f"u7说：{i} {time.monotonic_ns()} ".encode() + pad) for i in range(sent, due))
                for c in opened:
                    c.t.write(chunk)
                sent = due
                for c in opened:
                    await c.writable.wait()
            await asyncio.sleep(0.0005 if rate > 0 else 0)
        for _ in range(600):
            if all(c.t.is_closing() for c in opened):
                break
            await asyncio.sleep(0.1)

    uvloop.run(main())


# -- the clients (each in its own gevent process) ------------------------------------------------------
def client(kind: str, port: int, conns: int, frames: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    import socket

    import gevent

    url = f"ws://127.0.0.1:{port}/chat"
    lat_sum = [0]

    def consume(text: str) -> None:
        lat_sum[0] += time.monotonic_ns() - int(text.split(" ", 2)[1])

    def open_raw() -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096)
        return sock, buf.split(b"\r\n\r\n", 1)[1]

    def run_frames():  # type: ignore[no-untyped-def]
        from wsbench.locust.frames import FrameReader

        sock, rest = open_raw()
        yield
        reader = FrameReader()
        got = 0
        texts = reader.feed(rest) if rest else []
        while True:
            for t in texts:
                consume(t.decode())
            got += len(texts)
            if got >= frames:
                return
            texts = reader.feed(sock.recv(262144))

    def run_websocket_client():  # type: ignore[no-untyped-def]
        import websocket

        ws = websocket.create_connection(url, skip_utf8_validation=True)
        yield
        for _ in range(frames):
            consume(ws.recv())

    def run_wsproto():  # type: ignore[no-untyped-def]
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request, TextMessage

        sock = socket.create_connection(("127.0.0.1", port))
        conn = WSConnection(ConnectionType.CLIENT)
        sock.sendall(conn.send(Request(host="127.0.0.1", target="/chat")))
        got = 0
        part: list[str] = []
        while got < frames:
            conn.receive_data(sock.recv(262144))
            for ev in conn.events():
                if isinstance(ev, AcceptConnection):
                    yield
                elif isinstance(ev, TextMessage):
                    part.append(ev.data)
                    if ev.message_finished:
                        consume("".join(part))
                        part.clear()
                        got += 1

    def run_simple_websocket():  # type: ignore[no-untyped-def]
        import simple_websocket

        ws = simple_websocket.Client.connect(url, receive_bytes=262144)
        yield
        for _ in range(frames):
            consume(ws.receive())

    fn = {
        "frames": run_frames,
        "websocket-client": run_websocket_client,
        "wsproto": run_wsproto,
        "simple-websocket": run_simple_websocket,
    }[kind]
    gens = [fn() for _ in range(conns)]
    for g in gens:
        next(g)

    def drain(g) -> None:  # type: ignore[no-untyped-def]
        for _ in g:
            pass

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    done = gevent.joinall([gevent.spawn(drain, g) for g in gens], timeout=600)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - t0
    total = conns * frames
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    ok = len(done) == conns
    print(
        f"{kind}\t{cpu / total * 1e6:.2f}\t{(r1.ru_stime - r0.ru_stime) / total * 1e6:.2f}\t{wall:.2f}\t"
        f"{lat_sum[0] / total / 1e6:.3f}\t{'ok' if ok else 'TIMEOUT'}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--frames", type=int, default=1500, help="frames per connection")
    parser.add_argument("--rate", type=float, default=200.0, help="frames/s per connection; 0 floods")
    parser.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated, of {', '.join(CLIENTS)}")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.conns, args.frames, args.rate)
        return 0
    if args.client:
        client(args.client, args.port, args.conns, args.frames)
        return 0
    print(f"# {args.conns} connections x {args.frames} frames, {args.rate:g} frames/s per connection (0: flood)")
    print("client\tus_cpu_per_frame\tof_which_sys_us\twall_s\tmean_latency_ms\tstatus")
    me = [sys.executable, "-m", "wsbench.locust.bench_clients"]
    for kind in args.clients.split(","):
        source = subprocess.Popen(
            [*me, "--serve", f"--conns={args.conns}", f"--frames={args.frames}", f"--rate={args.rate}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert source.stdout is not None
            port = int(source.stdout.readline().rsplit(":", 1)[1])
            subprocess.run(
                [*me, f"--client={kind}", f"--port={port}", f"--conns={args.conns}", f"--frames={args.frames}"],
                timeout=900,
                check=False,
            )
        finally:
            source.kill()
            source.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
