"""Shared fixtures: real reference servers on ephemeral loopback ports, stopped by PID."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from wsbench.target import ServerProcess, option_flags, reference_server_argv, start_server

SERVER_KINDS = ("tornado", "aiohttp")

StartServer = Callable[..., ServerProcess]


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def start_reference_server() -> Iterator[StartServer]:
    """``start_reference_server("tornado", max_message_size=1024, nodelay=False)`` -> a running server.

    Every server started through this fixture is stopped (SIGTERM, then SIGKILL) at teardown.
    """
    started: list[ServerProcess] = []

    def start(kind: str, *extra: str, **options: object) -> ServerProcess:
        argv = reference_server_argv(kind, [*option_flags(options), *extra])
        server = start_server(argv, label=kind)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def reference_server(server_kind: str, start_reference_server: StartServer) -> ServerProcess:
    """One reference server of each kind (the test runs once per kind), default options."""
    return start_reference_server(server_kind)
