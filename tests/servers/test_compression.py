"""SPEC 14.1: permessage-deflate only when the server was started with --compression."""

from __future__ import annotations

import asyncio
import zlib

import aiohttp

from tests.servers.wsclient import WsClient, chat_client, join_line, login_cookie, unique
from wsbench.target import ServerProcess

OFFER = "permessage-deflate; client_max_window_bits"


def test_not_negotiated_by_default(shared_server: ServerProcess) -> None:
    client = WsClient.connect(
        shared_server.url,
        login_cookie(shared_server.url, unique("z")),
        extra_headers={"Sec-WebSocket-Extensions": OFFER},
    )
    assert "sec-websocket-extensions" not in client.headers
    client.close()


async def _chat_compressed(base_url: str) -> list[str]:
    """Two aiohttp clients that negotiated compression chat; returns what the receiver got."""
    jars = [aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)]
    async with aiohttp.ClientSession(cookie_jar=jars[0]) as a, aiohttp.ClientSession(cookie_jar=jars[1]) as b:
        for session, name in ((a, "za"), (b, "zb")):
            async with session.post(base_url + "/login", data={"nickname": name}, allow_redirects=False) as r:
                assert r.status == 303
        wa = await a.ws_connect(base_url + "/chat", compress=15)
        wb = await b.ws_connect(base_url + "/chat", compress=15)
        assert wa.compress == 15 and wb.compress == 15  # negotiated
        got = [(await wa.receive(timeout=3)).data]
        big = "压缩" * 10000
        for text in ("hello", big, "again"):
            await wb.send_str(text)
        for _ in range(3):
            got.append((await wa.receive(timeout=3)).data)
        await wa.close()
        await wb.close()
        return got


def test_negotiated_and_working_with_compression(server_kind: str, start_reference_server) -> None:
    server = start_reference_server(server_kind, compression=True)
    client = WsClient.connect(
        server.url, login_cookie(server.url, "zz"), extra_headers={"Sec-WebSocket-Extensions": OFFER}
    )
    assert client.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate")
    other = chat_client(server.url, "zy")
    frame = client.recv_frame(3)  # the join line, compressed: RSV1 set (RFC 7692 §6)
    assert (frame.opcode, frame.rsv) == (0x1, 4)
    assert zlib.decompressobj(-15).decompress(frame.payload + b"\x00\x00\xff\xff").decode() == join_line("zy")
    other.close()
    client.abort()  # its further frames are compressed too, which the raw client does not inflate
    got = asyncio.run(_chat_compressed(server.url))
    assert got == ["~~~zb进入了聊天室~~~", "zb说：hello", "zb说：" + "压缩" * 10000, "zb说：again"]


async def _size_boundary(base_url: str, limit: int) -> tuple[str, int | None]:
    jars = [aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)]
    async with aiohttp.ClientSession(cookie_jar=jars[0]) as a, aiohttp.ClientSession(cookie_jar=jars[1]) as b:
        for session, name in ((a, "ra"), (b, "sb")):
            async with session.post(base_url + "/login", data={"nickname": name}, allow_redirects=False) as r:
                assert r.status == 303
        receiver = await a.ws_connect(base_url + "/chat", compress=15)
        sender = await b.ws_connect(base_url + "/chat", compress=15)
        await receiver.receive(timeout=3)  # sb's join line
        await sender.send_str("a" * limit)  # compresses to a few bytes: the limit is on the inflated size
        relayed = (await receiver.receive(timeout=3)).data
        await sender.send_str("b" * (limit + 1))
        closed = await sender.receive(timeout=3)
        await receiver.close()
        await sender.close()
        return relayed, closed.data if closed.type == aiohttp.WSMsgType.CLOSE else None


def test_size_limit_applies_to_inflated_messages(server_kind: str, start_reference_server) -> None:  # SPEC 9.1
    server = start_reference_server(server_kind, compression=True, max_message_size=1000)
    relayed, close_code = asyncio.run(_size_boundary(server.url, 1000))
    assert relayed == "sb说：" + "a" * 1000
    assert close_code == 1009
