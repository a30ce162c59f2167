"""SPEC 15: options, defaults, the listening line; and the override structure fixtures rely on."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.servers.wsclient import chat_client, join_line, said_line
from wsbench.target import REFERENCE_SERVERS, start_server


def run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_lists_every_option_with_its_default(server_kind: str) -> None:
    result = run([sys.executable, "-m", REFERENCE_SERVERS[server_kind], "--help"])
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: python -m {REFERENCE_SERVERS[server_kind]}")
    text = " ".join(result.stdout.split("options:", 1)[1].split())
    for option, default in [
        ("--host", "127.0.0.1"),
        ("--port", "8888"),
        ("--max-message-size", "65536"),
        ("--ping-interval", "20"),
        ("--ping-timeout", "20"),
        ("--nodelay, --no-nodelay", "True"),
        ("--allowed-origin", "none"),
        ("--max-connections", "10000"),
        ("--send-buffer-limit", "1048576"),
        ("--compression, --no-compression", "False"),
        ("--cookie-secret", "WSBENCH_COOKIE_SECRET"),
    ]:
        assert option in text, option
        after = text.split(option, 1)[1][:300]
        assert default in after, (option, after)


@pytest.mark.parametrize(
    "args",
    [["--port", "70000"], ["--max-message-size", "0"], ["--ping-interval", "-1"], ["--allowed-origin", "chat.example"]],
    ids=["port", "size", "interval", "origin"],
)
def test_bad_option_is_exit_2_with_message(server_kind: str, args: list[str]) -> None:
    result = run([sys.executable, "-m", REFERENCE_SERVERS[server_kind], *args])
    assert result.returncode == 2
    assert "error:" in result.stderr and result.stdout == ""


def test_port_in_use_is_a_clear_error(server_kind: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run([sys.executable, "-m", REFERENCE_SERVERS[server_kind], "--port", str(port)])
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_listening_line_is_first_and_flushed_via_wsbench_serve(server_kind: str) -> None:
    wsbench = shutil.which("wsbench")
    argv = [wsbench] if wsbench else [sys.executable, "-m", "wsbench.cli"]
    # No -u and no PYTHONUNBUFFERED: the server must flush the line itself.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [*argv, "serve", server_kind, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0


def test_cookie_secret_from_environment(server_kind: str) -> None:
    argv = [sys.executable, "-m", REFERENCE_SERVERS[server_kind], "--port", "0"]
    env = {"WSBENCH_COOKIE_SECRET": "from-the-environment"}
    with start_server(argv, label=server_kind, env=env) as one, start_server(argv, label=server_kind, env=env) as two:
        from tests.servers.test_http import get
        from tests.servers.wsclient import login_cookie

        assert get(two, "/", login_cookie(one.url, "env"))[0] == 200


VARIANT = """
import sys
from wsbench_servers.{module} import ChatServer, main


class EchoToSender(ChatServer):
    def relay_targets(self, exclude):
        return list(self.room.values())  # the injected fault: the sender gets its own lines


sys.exit(main(server_class=EchoToSender))
"""


def test_one_method_override_changes_one_behaviour(server_kind: str, tmp_path: Path) -> None:
    """The structure fault-injection fixtures rely on: subclass ChatServer, pass server_class."""
    module = REFERENCE_SERVERS[server_kind].rsplit(".", 1)[1]
    script = tmp_path / "variant.py"
    script.write_text(textwrap.dedent(VARIANT.format(module=module)))
    argv = [sys.executable, "-u", str(script), "--host", "127.0.0.1", "--port", "0"]
    with start_server(argv, label=f"{server_kind}-echo") as server:
        a = chat_client(server.url, "a")
        assert a.recv_text() == join_line("a")  # its own join line, because of the fault
        a.send_text("echo?")
        assert a.recv_text() == said_line("a", "echo?")
        a.close()
