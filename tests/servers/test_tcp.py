"""SPEC 13.1: TCP_NODELAY on every /chat connection, explicitly off with --no-nodelay.

The option is read on the server's own socket: the test duplicates the server process's file
descriptor with pidfd_getfd(2) (Linux 5.6+, allowed for our own child process) and calls getsockopt.
"""

from __future__ import annotations

import ctypes
import os
import socket

import psutil
import pytest

from tests.servers.wsclient import chat_client
from wsbench.target import ServerProcess

SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 (asm-generic) syscall number


def server_socket_option(server: ServerProcess, client_sock: socket.socket, level: int, option: int) -> int:
    """``getsockopt`` on the server's end of ``client_sock``'s TCP connection."""
    peer = client_sock.getsockname()
    conns = [c for c in psutil.Process(server.pid).net_connections(kind="tcp") if c.raddr and tuple(c.raddr) == peer]
    assert len(conns) == 1, conns
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(server.pid)
    try:
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, conns[0].fd, 0)
        if fd < 0:
            pytest.skip(f"pidfd_getfd not permitted here: {os.strerror(ctypes.get_errno())}")
        dup = socket.socket(fileno=fd)
        try:
            return dup.getsockopt(level, option)
        finally:
            dup.close()  # closes our duplicate only; the server's connection is unaffected
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("nodelay", [True, False], ids=["nodelay", "no-nodelay"])
def test_tcp_nodelay_follows_the_option(server_kind: str, start_reference_server, nodelay: bool) -> None:
    server = start_reference_server(server_kind, nodelay=nodelay)
    clients = [chat_client(server.url, f"n{i}") for i in range(2)]
    for client in clients:
        value = server_socket_option(server, client.sock, socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert bool(value) is nodelay
    # Still a working connection after the check.
    clients[0].send_text("hi")
    assert clients[1].recv_until(lambda m: m == "n0说：hi")
    for client in clients:
        client.close()


def test_tcp_nodelay_is_on_by_default(shared_server: ServerProcess) -> None:  # SPEC 15.1
    client = chat_client(shared_server.url, f"d{os.getpid()}")
    assert server_socket_option(shared_server, client.sock, socket.IPPROTO_TCP, socket.TCP_NODELAY)
    client.close()
