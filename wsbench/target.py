"""Starting and stopping servers that follow SPEC.md's start-up contract (SPEC 15).

A server is started with ``--host 127.0.0.1 --port 0`` plus option flags; its first stdout line,
``listening on http://HOST:PORT``, gives the address. Processes are stopped by PID (SIGTERM, then
SIGKILL after a grace period), never by name. Output after the first line is drained in a background
thread into a bounded buffer so a chatty server cannot block on a full pipe, and so that an error
message can quote its last lines when it dies.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wsbench_servers.options import DEFAULT_MAX_CONNECTIONS

from wsbench import fdlimit
from wsbench.errors import ServerStartError, UsageError

REFERENCE_SERVERS = {
    "tornado": "wsbench_servers.tornado_server",
    "aiohttp": "wsbench_servers.aiohttp_server",
}
LISTENING_RE = re.compile(r"^listening on (http://\S+?)/?\s*$")
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost", "[::1]"}


def option_flags(options: Mapping[str, object]) -> list[str]:
    """Turn ``{"max_message_size": 1024, "nodelay": False, "allowed_origin": [..]}`` into CLI flags.

    Booleans become ``--name`` / ``--no-name``; lists repeat the flag; ``None`` is left out.
    """
    flags: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        name = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list | tuple):
            for item in value:
                flags += [name, str(item)]
        else:
            flags += [name, str(value)]
    return flags


def parse_server_spec(spec: str) -> tuple[str, list[str]]:
    """``"tornado:--no-nodelay --max-message-size 1024"`` -> ``("tornado", ["--no-nodelay", ...])``."""
    kind, _, extra = spec.partition(":")
    if kind not in REFERENCE_SERVERS:
        raise UsageError(f"unknown server {kind!r}: choose one of {', '.join(REFERENCE_SERVERS)}")
    return kind, shlex.split(extra)


def reference_server_argv(kind: str, extra: Sequence[str] = (), host: str = "127.0.0.1") -> list[str]:
    if kind not in REFERENCE_SERVERS:
        raise UsageError(f"unknown server {kind!r}: choose one of {', '.join(REFERENCE_SERVERS)}")
    fitted = _fitted_max_connections(extra)
    return [sys.executable, "-u", "-m", REFERENCE_SERVERS[kind], "--host", host, "--port", "0", *fitted, *extra]


def _fitted_max_connections(extra: Sequence[str]) -> list[str]:
    """``--max-connections N`` for a reference server wsbench starts where the default cannot fit.

    A reference server refuses to start when its open-file hard limit cannot hold ``--max-connections``
    (SPEC 16.3), and the default is 10,000. A run of a few hundred clients on a machine whose hard limit
    is 1,024 or 4,096 must not fail for a capacity it never uses: when the user gave no
    ``--max-connections`` and the default does not fit, the server wsbench starts gets what the hard
    limit holds (the run's own descriptor check still refuses a run that does not fit).
    """
    if any(arg == "--max-connections" or arg.startswith("--max-connections=") for arg in extra):
        return []
    _soft, hard = fdlimit.current()
    if hard == fdlimit.UNLIMITED or hard >= fdlimit.needed_for_server(DEFAULT_MAX_CONNECTIONS):
        return []
    return ["--max-connections", str(max(1, hard - fdlimit.MARGIN))]


def command_server_argv(command: str, extra: Sequence[str] = (), host: str = "127.0.0.1") -> list[str]:
    argv = shlex.split(command)
    if not argv:
        raise UsageError("--server-cmd is empty")
    return [*argv, "--host", host, "--port", "0", *extra]


@dataclass
class ServerProcess:
    """A running server started by wsbench."""

    argv: list[str]
    proc: subprocess.Popen[str]
    url: str
    label: str = ""
    _tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))
    _reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :] + "/chat"

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output_tail(self, lines: int = 10) -> str:
        return "\n".join(list(self._tail)[-lines:])

    def death_message(self) -> str:
        code = self.proc.poll()
        if code is None:
            how = "is still running"
        elif code >= 0:
            how = f"exited with code {code}"
        else:
            how = f"was killed by signal {-code}"
        tail = self.output_tail()
        said = f"; its last output:\n{tail}" if tail else ""
        return f"server {self.label or self.argv[0]} (pid {self.pid}) {how}{said}"

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self.alive():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self.proc.stdout is not None and (self._reader is None or not self._reader.is_alive()):
            with contextlib.suppress(OSError):
                self.proc.stdout.close()  # the pipe of its output (else: ResourceWarning at exit)
        return self.proc.poll()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for commands that take the port another way: ``{port}``)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_server(
    argv: Sequence[str],
    *,
    label: str = "",
    timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    port: int | None = None,
) -> ServerProcess:
    """Start ``argv`` and wait for its ``listening on http://HOST:PORT`` line (with ``port``: wait until
    127.0.0.1:``port`` accepts connections, for a server that was told its port another way)."""
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=full_env,
            cwd=cwd,
        )
    except OSError as exc:
        raise ServerStartError(f"could not start {shlex.join(argv)}: {exc}") from exc
    tail: collections.deque[str] = collections.deque(maxlen=50)
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if not found and port is None:
                m = LISTENING_RE.match(line)
                if m:
                    found.append(m.group(1))
                    ready.set()
                    continue
            tail.append(line)
        ready.set()

    reader = threading.Thread(target=pump, name=f"server-output-{proc.pid}", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    if port is not None:
        while time.monotonic() < deadline and proc.poll() is None:
            if _port_open("127.0.0.1", port):
                found.append(f"http://127.0.0.1:{port}")
                break
            time.sleep(0.05)
    while not found and not ready.wait(0.05):
        if time.monotonic() > deadline:
            break
    server = ServerProcess(list(argv), proc, found[0] if found else "", label, tail, reader)
    if not found:
        exited = proc.poll() is not None
        server.stop(grace=2)
        detail = (
            server.death_message()
            if exited
            else (
                f"does not accept connections on 127.0.0.1:{port}"
                if port is not None
                else "printed no 'listening on http://HOST:PORT' line"
            )
            + f" within {timeout:g}s\n{server.output_tail()}"
        )
        raise ServerStartError(f"could not start {label or shlex.join(argv)}: {detail}".rstrip())
    host = server.url.split("//", 1)[1].rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS:
        server.stop()
        raise ServerStartError(f"{label or argv[0]} listens on {server.url}, which is not a loopback address")
    return server
