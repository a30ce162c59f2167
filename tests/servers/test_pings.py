"""SPEC 10: server pings, ping timeout with 1011, clients that answer stay."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from tests.conftest import SERVER_KINDS
from tests.servers.wsclient import OP_CLOSE, OP_PING, Dropped, Pump, Room, join_line, leave_line, said_line
from wsbench.target import ServerProcess, option_flags, reference_server_argv, start_server

INTERVAL = 0.5
TIMEOUT = 0.5


@pytest.fixture(scope="module", params=SERVER_KINDS)
def ping_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    flags = option_flags({"ping_interval": INTERVAL, "ping_timeout": TIMEOUT})
    server = start_server(reference_server_argv(request.param, flags), label=request.param)
    yield server
    server.stop()


@pytest.fixture
def room(ping_server: ServerProcess) -> Iterator[Room]:
    room = Room(ping_server.url)
    yield room
    room.close_all()


def test_client_that_answers_stays_and_gets_regular_pings(room: Room) -> None:  # SPEC 10.1, 10.3
    opened = time.monotonic()
    client = room.join("pong")
    assert client.messages_within(2.3) == []  # silent apart from pings, and still open
    times = [t - opened for t, _ in client.pings]
    assert 3 <= len(times) <= 5, times
    assert 0.3 <= times[0] <= 1.0, times  # the first ping one interval after the handshake
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.3 <= gap <= 1.0 for gap in gaps), gaps
    client.send_text("alive")  # still open
    assert client.close().code == 1000


@pytest.mark.parametrize("reply_to_close", [False, True], ids=["silent", "answers-close"])
def test_client_that_never_pongs_gets_1011(room: Room, reply_to_close: bool) -> None:  # SPEC 10.2
    watcher = room.join("watch")
    deaf = room.join("deaf")
    assert watcher.recv_text() == join_line(room.name("deaf"))
    pump = Pump(watcher)
    deaf.autopong = False
    deadline = time.monotonic() + 4
    close = None
    while time.monotonic() < deadline:
        frame = deaf.recv_frame(deadline - time.monotonic())
        now = time.monotonic()
        if frame.opcode == OP_PING:
            deaf.pings.append((now, frame.payload))
        elif frame.opcode == OP_CLOSE:
            close = (now, int.from_bytes(frame.payload[:2], "big"), frame.payload[2:].decode())
            break
    assert close is not None, "no close frame"
    first_ping = deaf.pings[0][0]
    closed_at, code, reason = close
    assert (code, reason) == (1011, "ping timeout")
    assert TIMEOUT - 0.1 <= closed_at - first_ping <= TIMEOUT + 1.0
    if reply_to_close:
        deaf.send_close(1011)
    end = deaf.wait_tcp_end(3)
    assert end in ("eof", "reset")
    assert time.monotonic() - first_ping <= TIMEOUT + 1.0 + 0.5  # TCP closed in time (0.5 s test slack)
    pump.wait_for(leave_line(room.name("deaf")))
    assert pump.stop().count(leave_line(room.name("deaf"))) == 1
    assert pump.ended is None  # the watcher, which answers pings, is still connected


def test_only_a_pong_counts(room: Room) -> None:  # SPEC 10.2: talking is not answering
    watcher = room.join("watch")
    chatty = room.join("chatty")
    watcher.recv_text()
    pump = Pump(watcher)
    chatty.autopong = False
    t0 = time.monotonic()
    closed = None
    n = 0
    while time.monotonic() - t0 < 3 and closed is None:
        chatty.send_text(f"m{n}")
        n += 1
        try:
            chatty.messages_within(0.1)
        except Exception as exc:  # ServerClosed
            closed = exc
    assert getattr(closed, "code", None) == 1011, closed
    pump.wait_for(leave_line(room.name("chatty")))
    lines = pump.stop()
    assert lines[0] == said_line(room.name("chatty"), "m0")
    assert pump.ended is None


def test_server_answers_while_pinging(room: Room) -> None:  # SPEC 8.6 with pings on
    client = room.join("both")
    client.send_frame(OP_PING, b"abc")
    while True:
        frame = client.recv_frame(3)
        if frame.opcode == 0xA:
            assert frame.payload == b"abc"
            break


def test_interval_zero_disables_pings(server_kind: str, start_reference_server) -> None:  # SPEC 10.1
    server = start_reference_server(server_kind, ping_interval=0, ping_timeout=0.2)
    room = Room(server.url)
    client = room.join("quiet")
    client.autopong = False
    assert client.messages_within(1.2) == []
    assert client.pings == []
    client.send_text("still here")
    try:
        assert client.close().code == 1000
    except Dropped:
        pytest.fail("dropped")
