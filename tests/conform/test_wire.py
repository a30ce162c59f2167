"""The raw-frame client: framing (sans-I/O), and observations against a tiny local wsproto server."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from wsbench.conform import http_client, wire
from wsbench.conform.http_client import Endpoint
from wsbench.conform.wire import (
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    RSV1,
    FrameParser,
    apply_mask,
    encode_frame,
    ws_connect,
)

# ----------------------------------------------------------------------------------------------
# framing, no sockets


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_then_parse_round_trips_every_length_encoding(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = encode_frame(OP_TEXT, payload, mask=True)
    (frame,) = FrameParser().feed(data)
    assert frame.payload == payload
    assert frame.masked and frame.fin and frame.opcode == OP_TEXT and frame.rsv == 0


def test_parser_handles_byte_by_byte_input_and_several_frames() -> None:
    data = encode_frame(OP_TEXT, b"one", mask=False) + encode_frame(
        OP_CONTINUATION, b"two", fin=False, rsv=RSV1, mask=False
    )
    parser = FrameParser()
    frames = [f for byte in data for f in parser.feed(bytes([byte]))]
    assert [(f.opcode, f.payload, f.fin, f.rsv, f.masked) for f in frames] == [
        (OP_TEXT, b"one", True, 0, False),
        (OP_CONTINUATION, b"two", False, RSV1, False),
    ]


def test_header_bits_are_exactly_as_asked() -> None:
    data = encode_frame(0xB, b"x", fin=False, rsv=0b101, mask=False)
    assert data[0] == 0b0101_1011  # FIN 0, RSV1 1, RSV2 0, RSV3 1, opcode 0xB
    assert data[1] == 1  # no mask bit, length 1


def test_mask_is_its_own_inverse_and_matches_rfc_example() -> None:
    key = bytes([0x37, 0xFA, 0x21, 0x3D])
    # RFC 6455 §5.7: a masked "Hello"
    assert apply_mask(b"Hello", key) == bytes([0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert apply_mask(apply_mask(b"any payload at all", key), key) == b"any payload at all"


def test_close_payload() -> None:
    assert wire.close_payload(None) == b""
    assert wire.close_payload(1000, "bye") == struct.pack("!H", 1000) + b"bye"


def test_endpoint_from_url() -> None:
    ep = Endpoint.from_url("http://127.0.0.1:8888/")
    assert (ep.host, ep.port, ep.origin) == ("127.0.0.1", 8888, "http://127.0.0.1:8888")
    assert Endpoint.from_url("ws://[::1]:9/chat").host_header == "[::1]:9"
    with pytest.raises(ValueError):
        Endpoint.from_url("http://127.0.0.1")
    with pytest.raises(ValueError):
        Endpoint.from_url("https://127.0.0.1:1")


def test_close_observation_texts() -> None:
    end = wire.StreamEnd(1.5, "rst")
    assert (
        wire.CloseObservation("dropped", 1.0, end=end).describe()
        == "dropped without close frame (TCP reset) after 500.0 ms"
    )
    obs = wire.CloseObservation("close", 1.0, 1009, "too big", 1.002, wire.StreamEnd(1.003, "fin"))
    assert obs.describe() == "close 1009 'too big' after 2.0 ms, then FIN"
    assert "still open" in wire.CloseObservation("open", 1.0, waited=2.0).describe()


# ----------------------------------------------------------------------------------------------
# a local server speaking wsproto (a different implementation from ours), with scripted behaviour


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    if event.target == "/deny":
                        writer.write(ws.send(RejectConnection(status_code=401)))
                        await writer.drain()
                        writer.close()
                        return
                    writer.write(ws.send(AcceptConnection()))
                elif isinstance(event, TextMessage):
                    text = event.data
                    if text == "drop":
                        writer.close()
                        return
                    if text == "reset":
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    if text == "ping me":
                        writer.write(ws.send(Ping(b"srv")))
                    elif text == "fragments":
                        writer.write(ws.send(TextMessage("frag", message_finished=False)))
                        writer.write(ws.send(TextMessage("mented", message_finished=True)))
                    elif text != "ignore":
                        writer.write(ws.send(TextMessage("echo:" + text)))
                elif isinstance(event, BytesMessage):
                    writer.write(ws.send(BytesMessage(event.data)))
                elif isinstance(event, Ping):
                    writer.write(ws.send(event.response()))
                elif isinstance(event, Pong):
                    writer.write(ws.send(TextMessage("got pong " + bytes(event.payload).decode())))
                elif isinstance(event, CloseConnection):
                    if ws.state.name != "CLOSED":
                        writer.write(ws.send(event.response()))
                    await writer.drain()
                    writer.close()
                    return
            await writer.drain()
    except Exception:  # a protocol error: wsproto already queued its close frame (1002 etc.)
        out = ws.send(CloseConnection(code=1002)) if ws.state.name == "OPEN" else b""
        writer.write(out)
        writer.close()


def test_handshake_echo_ping_and_close() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        ep = Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            hs = await ws_connect(ep, origin="http://x.example", cookie="a=b")
            assert hs.status == 101 and hs.ws is not None
            ws = hs.ws
            await ws.send_text("héllo")
            assert await ws.wait_until(lambda: ws.texts() == ["echo:héllo"], 2)
            # our pings are answered, and we answer the server's pings (auto-pong)
            await ws.send_frame(OP_PING, b"abc")
            assert await ws.wait_until(lambda: any(p.payload == b"abc" for p in ws.pongs), 2)
            await ws.send_text("ping me")
            assert await ws.wait_until(lambda: "got pong srv" in ws.texts(), 2)
            assert [p.payload for p in ws.pings] == [b"srv"]
            # fragmented server messages are reassembled
            await ws.send_text("fragments")
            assert await ws.wait_until(lambda: "fragmented" in ws.texts(), 2)
            t = await ws.send_close(1000, "bye")
            obs = await ws.observe_close(t, 2)
            assert obs.kind == "close" and obs.code == 1000 and obs.end is not None and obs.end.kind == "fin"
            assert obs.describe().startswith("close 1000 'bye' after ")
            await ws.aclose()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def _with_server(body: Callable[[Endpoint], Awaitable[None]]) -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        ep = Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            await body(ep)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_refused_handshake_reports_the_status() -> None:
    async def body(ep: Endpoint) -> None:
        hs = await ws_connect(ep, path="/deny")
        assert hs.ws is None and hs.status == 401
        assert hs.response.describe().startswith("HTTP 401 in ")

    _with_server(body)


def test_protocol_error_answered_with_close_frame() -> None:
    async def body(ep: Endpoint) -> None:
        hs = await ws_connect(ep)
        assert hs.ws is not None
        t = await hs.ws.send_frame(OP_TEXT, b"unmasked", mask=False)
        obs = await hs.ws.observe_close(t, 2)
        assert obs.kind == "close" and obs.code == 1002
        await hs.ws.aclose()

    _with_server(body)


@pytest.mark.parametrize(("command", "kind"), [("drop", "fin"), ("reset", "rst")])
def test_drop_without_close_frame_is_its_own_observation(command: str, kind: str) -> None:
    async def body(ep: Endpoint) -> None:
        hs = await ws_connect(ep)
        assert hs.ws is not None
        t = await hs.ws.send_text(command)
        obs = await hs.ws.observe_close(t, 2)
        assert obs.kind == "dropped" and obs.end is not None and obs.end.kind == kind
        assert "dropped without close frame" in obs.describe()
        await hs.ws.aclose()

    _with_server(body)


def test_no_answer_is_reported_as_open() -> None:
    async def body(ep: Endpoint) -> None:
        hs = await ws_connect(ep)
        assert hs.ws is not None
        t = await hs.ws.send_text("ignore")
        obs = await hs.ws.observe_close(t, 0.2)
        assert obs.kind == "open" and obs.after_s is None
        await hs.ws.aclose()

    _with_server(body)


def test_unreachable_server_gives_no_status() -> None:
    async def body() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        hs = await ws_connect(Endpoint("127.0.0.1", port), timeout=1)
        assert hs.status is None and hs.ws is None and "cannot connect" in (hs.response.error or "")
        r = await http_client.http_request(Endpoint("127.0.0.1", port), "GET", "/", timeout=1)
        assert r.status is None

    asyncio.run(body())


def test_login_and_chat_against_a_reference_server(start_reference_server) -> None:  # type: ignore[no-untyped-def]
    server = start_reference_server("tornado")

    async def body() -> None:
        ep = Endpoint.from_url(server.url)
        result = await http_client.login(ep, "wire-test ✓")
        assert result.response.status == 303 and result.cookie and result.cookie.startswith("nickname=")
        hs = await ws_connect(ep, cookie=result.cookie)
        assert hs.status == 101 and hs.ws is not None
        t = await hs.ws.send_frame(OP_CLOSE, wire.close_payload(4000))
        obs = await hs.ws.observe_close(t, 2)
        assert (obs.kind, obs.code) == ("close", 4000)
        page = await http_client.http_request(ep, "GET", "/", headers=[("Cookie", result.cookie)])
        assert page.status == 200 and "text/html" in (page.header("content-type") or "")

    asyncio.run(body())
