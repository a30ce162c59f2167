"""Fixtures for the spec suite: one shared server per kind and module, for tests that need no options."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SERVER_KINDS
from wsbench.target import ServerProcess, reference_server_argv, start_server


@pytest.fixture(scope="module", params=SERVER_KINDS)
def shared_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A default-options server of each kind, shared by the tests of one module.

    Tests on it use unique nicknames (``wsclient.unique``) and only assert on lines about them.
    """
    server = start_server(reference_server_argv(request.param), label=request.param)
    yield server
    server.stop()
