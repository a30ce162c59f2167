"""A seeded, bounded fuzz campaign against a reference server (issue 16), checked against the reference
model of SPEC 8 and 9.1 (:mod:`tests.servers.fuzz_model`), then by the health checks of
:func:`tests.servers.hostile.health_problems`.

Benchmark (a minute or two per server; the numbers go into the issue note)::

    python -m tests.servers.fuzz_campaign --server tornado --server aiohttp --seconds 90 --seed 16

The test suite runs a short seeded version (tests/servers/test_fuzz.py). Everything is on loopback,
bounded in count and time, and stops by itself; the server is started and stopped by PID.

Trials, drawn from one ``random.Random(seed)``:

- ``frames``: a fresh client logs in and sends 1-8 random frames (opcodes, FIN, RSV, mask, lengths
  around 0/125/126 and ``max_message_size``, valid and invalid UTF-8 split anywhere, close payloads),
  written coalesced, byte by byte or in random chunks, then a tail that completes any message in
  progress, a sentinel text and a close 1000. The model predicts the observer's relays, the
  sender's pongs and the close codes allowed; any difference is a finding;
- ``http``: a mutated request (method, path with NUL/long/escapes, cookie and ``Sec-WebSocket-*``
  headers of random bytes, compression offers, bodies, chunked garbage), whole or byte by byte; any
  5xx is a finding;
- ``storm``: a burst of connections reset at once, a ping flood then a reset, an upgrade then a
  reset, a body cut by a FIN; the server must stay up.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.servers.fuzz_model import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    Prediction,
    predict,
)
from tests.servers.hostile import LoggedServer, health_problems, logged_server, request_bytes, rss_of, status_of
from tests.servers.wsclient import Dropped, WsClient, build_frame, host_port, login_cookie, said_line, unique

LIMIT = 300  # --max-message-size of the fuzzed server: small, so 9.1's boundary is hit often
SERVER_OPTIONS = {"max_message_size": LIMIT, "ping_interval": 0, "max_connections": 200}
CLOSE_WAIT = 3.0


def encode(frame: Frame) -> bytes:
    return build_frame(frame.opcode, frame.payload, fin=frame.fin, rsv=frame.rsv, mask=frame.masked)


# ---- generators ---------------------------------------------------------------------------------

TEXTS = ["hello", "", "你好，世界", "😀👍🏽", "a" * 125, "ünïcödé", "x" * 126]
BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", "你".encode()[:2]]


def payload_for(rng: random.Random, opcode: int) -> bytes:
    roll = rng.random()
    if opcode in (OP_PING, OP_PONG):
        return os.urandom(rng.choice([0, 1, 5, 125, 125, 126]))
    if opcode == OP_CLOSE:
        kind = rng.random()
        if kind < 0.15:
            return b""
        if kind < 0.25:
            return b"\x03"
        code = rng.choice([1000, 1001, 1003, 1005, 1006, 1011, 1012, 1015, 999, 2999, 3000, 4999, 5000, 65535])
        reason = b"\xff\xfe" if rng.random() < 0.15 else b"bye"
        return struct.pack("!H", code) + reason
    if roll < 0.15:
        return b"z" * rng.choice([LIMIT, LIMIT + 1, LIMIT // 2, LIMIT - 1])
    if roll < 0.3:
        good = rng.choice(TEXTS).encode()
        cut = rng.randint(0, len(good))
        return good[:cut] + rng.choice(BAD_UTF8) + good[cut:]
    if roll < 0.4:
        return os.urandom(rng.randint(0, 40))
    return rng.choice(TEXTS).encode()


def random_frames(rng: random.Random) -> list[Frame]:
    frames: list[Frame] = []
    for _ in range(rng.randint(1, 8)):
        roll = rng.random()
        if _in_progress(frames) and rng.random() < 0.6:
            opcode = OP_CONT  # mostly continue a fragmented message, sometimes break it
        elif roll < 0.35:
            opcode = OP_TEXT
        elif roll < 0.42:
            opcode = OP_CONT
        elif roll < 0.65:
            opcode = OP_PING
        elif roll < 0.7:
            opcode = OP_PONG
        elif roll < 0.76:
            opcode = OP_BINARY
        elif roll < 0.82:
            opcode = OP_CLOSE
        else:
            opcode = rng.choice([OP_TEXT, OP_CONT, 0x3, 0x7, 0xB, 0xF])
        payload = payload_for(rng, opcode)
        if opcode in (OP_TEXT, OP_CONT) and rng.random() < 0.3:  # split valid text anywhere
            text = rng.choice(TEXTS).encode()
            cut = rng.randint(0, len(text))
            frames.append(Frame(opcode, text[:cut], fin=False))
            frames.append(Frame(OP_CONT, text[cut:], fin=rng.random() < 0.7))
            continue
        fin = rng.random() < (0.9 if opcode >= 0x8 else 0.6)
        rsv = rng.choice([1, 2, 4]) if rng.random() < 0.05 else 0
        masked = rng.random() > 0.03
        frames.append(Frame(opcode, payload, fin=fin, rsv=rsv, masked=masked))
    return frames


def with_tail(frames: list[Frame], sentinel: bytes) -> list[Frame]:
    """Complete any message in progress, then a sentinel text and a close 1000 (if still open)."""
    state = predict(frames, LIMIT)
    if not state.open:
        return frames
    tail = list(frames)
    in_progress = _in_progress(frames)
    if in_progress:
        tail.append(Frame(OP_CONT, b"", fin=True))
    tail.append(Frame(OP_TEXT, sentinel))
    tail.append(Frame(OP_CLOSE, struct.pack("!H", 1000)))
    return tail


def _in_progress(frames: list[Frame]) -> bool:
    current = False
    for f in frames:
        if f.opcode in (OP_TEXT, OP_BINARY) or f.opcode == OP_CONT:
            current = not f.fin
    return current


# ---- one frames trial -----------------------------------------------------------------------------


@dataclass
class Findings:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)
        self.counts["findings"] += 1


def write(sock: socket.socket, data: bytes, rng: random.Random) -> str:
    mode = rng.random()
    try:
        if mode < 0.6 or len(data) > 2000:
            sock.sendall(data)
            return "coalesced"
        if mode < 0.8:
            for i in range(len(data)):
                sock.sendall(data[i : i + 1])
            return "byte-wise"
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 64)
            sock.sendall(data[pos : pos + step])
            pos += step
        return "chunked"
    except OSError:
        return "cut short (server closed)"


def sender_outcome(client: WsClient) -> tuple[list[bytes], int | None, bool, str]:
    """Pongs, the server's close code, whether it dropped without one, and how TCP ended."""
    pongs: list[bytes] = []
    deadline = time.monotonic() + CLOSE_WAIT
    while True:
        try:
            frame = client.recv_frame(max(0.01, deadline - time.monotonic()))
        except Dropped as dropped:
            return pongs, None, True, dropped.how
        except (TimeoutError, OSError):
            return pongs, None, False, "open"
        if frame.opcode == OP_PONG:
            pongs.append(frame.payload)
        elif frame.opcode == OP_CLOSE:
            code = struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else None
            with contextlib.suppress(OSError):
                client.send_frame(OP_CLOSE, frame.payload[:2])
            return pongs, code, False, client.wait_tcp_end(CLOSE_WAIT)


def frames_trial(server: LoggedServer, observer: WsClient, rng: random.Random, found: Findings, n: int) -> None:
    nick = unique("fz")
    sentinel = f"sentinel-{n}".encode()
    frames = with_tail(random_frames(rng), sentinel)
    expected = predict(frames, LIMIT)
    client = WsClient.connect(server.url, login_cookie(server.url, nick))
    mode = write(client.sock, b"".join(encode(f) for f in frames), rng)
    pongs, code, dropped, tcp = sender_outcome(client)
    client.sock.close()
    relayed = observer_relays(observer, nick)
    seen = f"code {code}, dropped {dropped}, TCP {tcp}, pongs {len(pongs)}, relays {len(relayed)}"
    wanted = predict_text(expected)
    label = f"trial {n} ({mode}): {describe(frames)}"
    found.counts[expected.reason or "open"] += 1
    if code is None and not dropped:
        found.problem(f"{label}: no close frame and TCP still open after {CLOSE_WAIT:g} s; want {wanted}")
        return
    if dropped and not expected.drop_ok:
        found.problem(f"{label}: dropped without a close frame; want {wanted}")
    if code is not None and code not in expected.codes:
        found.problem(f"{label}: {seen}; want {wanted}")
    if code is not None and tcp == "open":
        found.problem(f"{label}: TCP still open {CLOSE_WAIT:g} s after the close handshake")
    want_relays = [said_line(nick, r.decode()).encode() for r in expected.relays]
    if relayed != want_relays:
        found.problem(f"{label}: relayed {relayed[:3]!r}, want {want_relays[:3]!r}")
    required = expected.pongs if expected.optional_from is None else expected.pongs[: expected.optional_from]
    if pongs[: len(required)] != required or any(p not in expected.pongs for p in pongs):
        found.problem(f"{label}: pongs {[p[:8] for p in pongs]} want {[p[:8] for p in expected.pongs]}")


def observer_relays(observer: WsClient, nick: str) -> list[bytes]:
    """The observer's messages from ``nick`` until its leave line (which follows all its relays)."""
    prefix = f"{nick}说：".encode()
    leave = f"~~~{nick}离开了聊天室~~~".encode()
    relays: list[bytes] = []
    deadline = time.monotonic() + CLOSE_WAIT + 2
    while time.monotonic() < deadline:
        try:
            message = observer.recv_message(max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        data = message.encode() if isinstance(message, str) else message
        if data == leave:
            return relays
        if data.startswith(prefix):
            relays.append(data)
    relays.append(b"<no leave line>")
    return relays


def predict_text(p: Prediction) -> str:
    codes = sorted(p.codes) if p.codes else "none"
    return f"close {codes}{' or a drop' if p.drop_ok else ''} ({p.reason}), {len(p.relays)} relays"


def describe(frames: list[Frame]) -> str:
    names = {0: "CONT", 1: "TEXT", 2: "BIN", 8: "CLOSE", 9: "PING", 10: "PONG"}
    parts = []
    for f in frames:
        name = names.get(f.opcode, f"OP{f.opcode:X}")
        flags = ("" if f.fin else " fin=0") + (f" rsv={f.rsv}" if f.rsv else "") + ("" if f.masked else " unmasked")
        parts.append(f"{name}{flags} {f.payload[:12]!r}{'...' if len(f.payload) > 12 else ''}")
    return " | ".join(parts)


# ---- HTTP and storms ------------------------------------------------------------------------------

PATHS = [
    "/", "/login", "/chat", "/stats", "/static/chat.css", "/static/chat.css%00.js", "/static/" + "a" * 3000,
    "/%ff%fe", "/static/../../etc/passwd", "/static/%2e%2e/x", "/\u00e9", "/" + "x" * 9000, "*", "/login?x=%00",
]  # fmt: skip
OFFERS = [
    "permessage-deflate; server_max_window_bits=8", "permessage-deflate; =", "permessage-deflate;;;",
    "permessage-deflate; client_max_window_bits=99999999999999999999", "x, y, z",
]  # fmt: skip


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice([rng.randrange(32, 127), rng.randrange(128, 256)]) for _ in range(n))


def http_trial(server: LoggedServer, cookie: str, rng: random.Random, found: Findings, n: int) -> None:
    method = rng.choice(["GET", "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "G\x00T", "get"])
    path = rng.choice(PATHS)
    headers: dict[str, str] = {}
    if rng.random() < 0.5:
        value = rng.choice(
            [cookie, "nickname=" + random_bytes(rng, 20).decode("latin-1"), "nickname=é.é", "a=b; nickname=."]
        )
        headers["Cookie"] = value
    if path == "/chat" or rng.random() < 0.2:
        headers.update(
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": rng.choice(["13", "8", "", "13, 13"]),
            }
        )
        key = rng.choice(
            [base64.b64encode(os.urandom(16)).decode(), random_bytes(rng, 24).decode("latin-1"), "", "!!!!"]
        )
        headers["Sec-WebSocket-Key"] = key
        if rng.random() < 0.3:
            headers["Sec-WebSocket-Extensions"] = rng.choice(OFFERS)
        if rng.random() < 0.2:
            headers["Origin"] = rng.choice(["null", "http://evil.example", random_bytes(rng, 10).decode("latin-1")])
    body = b""
    if method == "POST" or rng.random() < 0.1:
        headers["Content-Type"] = rng.choice(
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "text/plain",
                "multipart/form-data",
            ]
        )
        body = rng.choice(
            [
                b"nickname=" + random_bytes(rng, 10),
                b"nickname=ok&nickname=%ff",
                b"--x\r\nContent-Disposition: form-data; name=nickname\r\n\r\n\xff\r\n--x--\r\n",
                b"%" * 50,
            ]
        )
        if rng.random() < 0.2:
            headers["Content-Length"] = rng.choice(["-1", "abc", "99999999999999999999", str(len(body) + 5)])
    raw = request_bytes(method, path, headers, body)
    if rng.random() < 0.1:
        raw = raw.replace(b"HTTP/1.1", rng.choice([b"HTTP/9.9", b"HTTP/1.1 extra", b""]), 1)
    host, port = host_port(server.url)
    response = b""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            if rng.random() < 0.15 and len(raw) < 3000:
                for i in range(len(raw)):
                    sock.sendall(raw[i : i + 1])
            else:
                sock.sendall(raw)
            sock.settimeout(1.0)
            with contextlib.suppress(OSError):
                response = sock.recv(4096)
    except OSError:
        pass
    status = status_of(response)
    found.counts[f"http {status}"] += 1
    if status is not None and status >= 500 and status != 503:
        found.problem(f"http trial {n}: {raw[:160]!r} -> {response[:120]!r}")


def storm_trial(server: LoggedServer, rng: random.Random, found: Findings, n: int) -> None:
    host, port = host_port(server.url)
    kind = rng.choice(["reset-burst", "ping-flood", "upgrade-reset", "cut-body"])
    found.counts[f"storm {kind}"] += 1
    try:
        if kind == "reset-burst":
            socks = [socket.create_connection((host, port), timeout=2) for _ in range(rng.randint(5, 40))]
            for s in socks:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
        elif kind == "ping-flood":
            client = WsClient.connect(server.url, login_cookie(server.url, unique("pf")))
            client.sock.sendall(b"".join(encode(Frame(OP_PING, b"p" * 100)) for _ in range(rng.randint(50, 400))))
            client.abort(reset=True)
        elif kind == "upgrade-reset":
            s = socket.create_connection((host, port), timeout=2)
            key = base64.b64encode(os.urandom(16)).decode()
            cookie = login_cookie(server.url, unique("ur"))
            s.sendall(
                request_bytes(
                    "GET",
                    "/chat",
                    {
                        "Cookie": cookie,
                        "Upgrade": "websocket",
                        "Connection": "Upgrade",
                        "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": key,
                    },
                )
            )
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        else:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(
                request_bytes(
                    "POST",
                    "/login",
                    {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "500"},
                    b"nickname=abc",
                )
            )
            s.shutdown(socket.SHUT_WR)
            s.close()
    except OSError as exc:
        found.problem(f"storm {kind} {n}: {exc!r}")


# ---- the campaign -----------------------------------------------------------------------------------


@dataclass
class Report:
    server: str
    seed: int
    seconds: float
    trials: int
    findings: Findings
    health: list[str]
    rss_samples: list[tuple[float, int]]
    stderr_lines: int

    @property
    def ok(self) -> bool:
        return not self.findings.problems and not self.health

    def summary(self) -> str:
        first, last = self.rss_samples[0][1], self.rss_samples[-1][1]
        mid = self.rss_samples[len(self.rss_samples) // 2][1]
        lines = [
            f"{self.server}: seed {self.seed}, {self.trials} trials in {self.seconds:.1f} s, "
            f"{self.findings.counts['findings']} finding(s), health {'ok' if not self.health else 'FAILED'}; "
            f"RSS {first / 2**20:.1f} -> {mid / 2**20:.1f} (mid) -> {last / 2**20:.1f} MiB; "
            f"{self.stderr_lines} stderr line(s)",
            "  " + ", ".join(f"{k}: {v}" for k, v in sorted(self.findings.counts.items()) if k != "findings"),
        ]
        lines += [f"  FINDING {p}" for p in self.findings.problems[:20]]
        lines += [f"  HEALTH {h}" for h in self.health]
        return "\n".join(lines)


def run_campaign(kind: str, seed: int, seconds: float, max_trials: int = 1_000_000) -> Report:
    rng = random.Random(seed)
    found = Findings()
    with logged_server(kind, **SERVER_OPTIONS) as server:
        rss_before = rss_of(server.pid)
        observer = WsClient.connect(server.url, login_cookie(server.url, unique("obs")))
        cookie = login_cookie(server.url, unique("http"))
        started = time.monotonic()
        samples = [(0.0, rss_before)]
        trials = 0
        while trials < max_trials and time.monotonic() - started < seconds:
            roll = rng.random()
            try:
                if roll < 0.7:
                    frames_trial(server, observer, rng, found, trials)
                elif roll < 0.95:
                    http_trial(server, cookie, rng, found, trials)
                else:
                    storm_trial(server, rng, found, trials)
            except Exception as exc:  # a trial that cannot even run is a finding (the server refused?)
                found.problem(f"trial {trials}: {exc!r}")
                if not server.process.alive():
                    break
            trials += 1
            if trials % 50 == 0:
                samples.append((time.monotonic() - started, rss_of(server.pid)))
        elapsed = time.monotonic() - started
        observer.close(timeout=1)
        samples.append((elapsed, rss_of(server.pid)))
        health = health_problems(server, rss_before=rss_before)
        health += rss_levelling(samples)
        return Report(kind, seed, elapsed, trials, found, health, samples, len(server.log_lines()))


def rss_levelling(samples: list[tuple[float, int]], allowance: int = 8 * 2**20) -> list[str]:
    """RSS levelled off: the second half of the campaign grew it by at most ``allowance``."""
    if len(samples) < 4:
        return []
    half = samples[len(samples) // 2][1]
    grown = samples[-1][1] - half
    return [f"RSS still growing: +{grown / 2**20:.1f} MiB over the second half"] if grown > allowance else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.fuzz_campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="append", choices=["tornado", "aiohttp"], help="repeatable (default: both)")
    parser.add_argument("--seconds", type=float, default=90.0, help="per server (bounded: at most 600)")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    seconds = min(args.seconds, 600.0)
    ok = True
    for kind in args.server or ["tornado", "aiohttp"]:
        report = run_campaign(kind, args.seed, seconds)
        print(report.summary(), flush=True)
        ok = ok and report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
