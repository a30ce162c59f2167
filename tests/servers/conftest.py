"""Fixtures for the spec suite: one shared server per kind and module, for tests that need no options."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SERVER_KINDS
from tests.servers.wsclient import Room
from wsbench.target import ServerProcess, reference_server_argv, start_server


@pytest.fixture(scope="module", params=SERVER_KINDS)
def shared_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A default-options server of each kind, shared by the tests of one module.

    Tests on it use unique nicknames (``wsclient.unique``) and only assert on lines about them.
    """
    server = start_server(reference_server_argv(request.param), label=request.param)
    yield server
    server.stop()


@pytest.fixture
def room(shared_server: ServerProcess) -> Iterator[Room]:
    """A fresh room (unique nicknames) on the module's shared server; its clients close at teardown."""
    room = Room(shared_server.url)
    yield room
    room.close_all()
