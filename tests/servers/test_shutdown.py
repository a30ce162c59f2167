"""SPEC 12.1: SIGTERM/SIGINT close every client with 1001, wait up to 2 s, exit 0."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.servers.wsclient import CloseResult, WsClient, chat_client, login_cookie


def closing_in_background(client: WsClient, reply: bool) -> tuple[threading.Thread, list[CloseResult]]:
    results: list[CloseResult] = []
    thread = threading.Thread(target=lambda: results.append(client.expect_close(6, reply=reply)), daemon=True)
    thread.start()
    return thread, results


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clients_get_1001_and_server_exits_0(server_kind: str, start_reference_server, sig: int) -> None:
    server = start_reference_server(server_kind)
    clients = [chat_client(server.url, f"c{i}") for i in range(3)]
    for i, client in enumerate(clients):
        client.messages_within(0.05 if i < 2 else 0.2)
    watchers = [closing_in_background(client, reply=True) for client in clients]
    t0 = time.monotonic()
    server.signal(sig)
    code = server.proc.wait(5)
    elapsed = time.monotonic() - t0
    assert code == 0
    assert elapsed < 1.5  # every client answered: no need to wait the full 2 s
    for thread, results in watchers:
        thread.join(5)
        (result,) = results
        # Join lines may arrive first; no leave lines after the close frames.
        assert all("离开了聊天室" not in m for m in result.messages if isinstance(m, str))
        assert (result.code, result.reason, result.dropped) == (1001, "server shutdown", False)
        assert result.tcp_end in ("eof", "reset")


def test_exits_within_about_2s_when_a_client_never_answers(server_kind: str, start_reference_server) -> None:
    server = start_reference_server(server_kind)
    polite = chat_client(server.url, "polite")
    deaf = chat_client(server.url, "deaf")
    polite.messages_within(0.1)
    thread, results = closing_in_background(polite, reply=True)
    t0 = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.proc.wait(6)
    elapsed = time.monotonic() - t0
    assert code == 0
    assert 1.5 < elapsed < 3.0, elapsed  # waited for the deaf client's close handshake, at most ~2 s
    thread.join(5)
    assert results[0].code == 1001
    frame = deaf.recv_frame(1)  # the deaf client was sent 1001 too
    assert (frame.opcode, frame.payload[:2]) == (0x8, (1001).to_bytes(2, "big"))
    deaf.sock.close()


def test_no_new_connections_after_signal(server_kind: str, start_reference_server) -> None:
    server = start_reference_server(server_kind)
    deaf = chat_client(server.url, "deaf")  # keeps the server in its 2 s grace period
    cookie = login_cookie(server.url, "late")
    server.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert server.alive()
    with pytest.raises(ConnectionRefusedError):
        WsClient.connect(server.url, cookie, timeout=1)
    assert server.proc.wait(5) == 0
    deaf.sock.close()
