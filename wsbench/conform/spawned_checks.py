"""The checks of the SPEC.md v1.1 decisions (:mod:`wsbench.conform.decisions`) that start server
processes of their own (:mod:`wsbench.conform.spawn`; their cases are ``spawns`` cases): the start-up
contract (option forms and bounds, 15.1; ``--host ::1``, 15.2) and the size limit with compression (9.1)
on a server started with ``--compression``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import zlib

from wsbench.conform import checks as c
from wsbench.conform import spawn
from wsbench.conform.http_client import Endpoint, http_request
from wsbench.conform.model import Outcome
from wsbench.conform.session import REPLY_TIMEOUT, SAID, CaseContext, CaseSkipped
from wsbench.conform.wire import OP_TEXT, RSV1

# --------------------------------------------------------------------------------------------------
# Start-up contract (SPEC 15.1, 15.2)


OPTION_NAMES = (
    "--host",
    "--port",
    "--max-message-size",
    "--ping-interval",
    "--ping-timeout",
    "--nodelay",
    "--allowed-origin",
    "--max-connections",
    "--send-buffer-limit",
    "--compression",
    "--cookie-secret",
)


async def startup_option_forms(ctx: CaseContext) -> Outcome:
    argv = spawn.server_argv(ctx)
    (_, line, _), (help_code, help_out, _), (abbrev_code, abbrev_out, _) = await asyncio.gather(
        spawn.run([*argv, "--port=0", "--max-message-size=1000"], wait_listening=True),
        spawn.run([*argv, "--help"]),
        spawn.run([*argv, "--max-conn", "5"]),
    )
    problems, seen = [], []
    if line.startswith("listening on http://"):
        seen.append(f"--port=0 --max-message-size=1000: {line.strip()!r}")
    else:
        seen.append(f"--port=0 --max-message-size=1000: first line {line.strip()!r}")
        problems.append("the --opt=value form is not accepted")
    missing = [name for name in OPTION_NAMES if name not in help_out]
    seen.append(f"--help: exit {help_code}, {len(help_out.splitlines())} lines on stdout")
    if help_code != 0 or help_out.startswith("listening on"):
        problems.append("--help did not exit 0")
    if missing:
        problems.append(f"--help does not name {', '.join(missing)}")
    seen.append(f"--max-conn 5 (abbreviated): exit {abbrev_code}")
    if abbrev_code != 2 or "listening on" in abbrev_out:
        problems.append("an abbreviated option name was accepted")
    return Outcome(not problems, "; ".join(seen) + (f" — {', '.join(problems)}" if problems else ""))


#: One value just outside each kind of bound (a start of a Python server costs a second or two of CPU).
BAD_VALUES: tuple[tuple[str, ...], ...] = (
    ("--ping-timeout", "nan"),
    ("--max-connections", "0"),
    ("--send-buffer-limit", "2147483648"),
    ("--allowed-origin", "http://chat.example/path"),
)


async def startup_option_bounds(ctx: CaseContext) -> Outcome:
    argv = spawn.server_argv(ctx)

    async def one(bad: tuple[str, ...]) -> tuple[str, bool, str]:
        code, out, err = await spawn.run([*argv, *bad])
        lines = [x for x in err.splitlines() if x.strip()]
        good, _ = spawn.refused_start(code, out, err)
        return " ".join(bad), good, f"exit {code}" + ("" if good else f", stderr {lines[-1][:60]!r}" if lines else "")

    results = await asyncio.gather(*(one(bad) for bad in BAD_VALUES))
    wrong = [f"{label}: {how}" for label, good, how in results if not good]
    seen = f"{len(results) - len(wrong)}/{len(results)} out-of-bounds values refused with status 2 and one line"
    return Outcome(not wrong, seen + (f"; not: {'; '.join(wrong)}" if wrong else ""))


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def startup_ipv6(ctx: CaseContext) -> Outcome:
    argv = spawn.server_argv(ctx)
    if not has_ipv6_loopback():
        raise CaseSkipped("this machine has no IPv6 loopback (::1)")
    proc = await asyncio.create_subprocess_exec(
        *argv, "--host", "::1", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), spawn.START_TIMEOUT)).decode(errors="replace").strip()
        prefix = "listening on http://[::1]:"
        if not line.startswith(prefix) or not line[len(prefix) :].isdigit():
            return c.failed(f"--host ::1: first line {line!r}, not 'listening on http://[::1]:PORT'")
        r = await http_request(Endpoint("::1", int(line[len(prefix) :])), "GET", "/stats")
        return Outcome(r.status == 200, f"--host ::1: {line!r}; GET /stats there: {r.describe()}")
    except TimeoutError:
        return c.failed(f"--host ::1: no listening line within {spawn.START_TIMEOUT:g} s")
    finally:
        await spawn.stop(proc)


# --------------------------------------------------------------------------------------------------
# The size limit with compression (SPEC 9.1), on a server of its own started with --compression

COMPRESSED_LIMIT = 1000
#: A "deflate bomb": this many zero bytes compress to about 10 KB; the server must stop inflating.
BOMB_BYTES = 16 * 2**20


def deflate_message(raw: bytes) -> bytes:
    """permessage-deflate payload of one message (RFC 7692 §7.2.1: the 00 00 ff ff tail removed)."""
    comp = zlib.compressobj(wbits=-15)
    data = comp.compress(raw) + comp.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data


async def _stats_rss(endpoint: Endpoint) -> int | None:
    r = await http_request(endpoint, "GET", "/stats")
    try:
        value = json.loads(r.body).get("rss_bytes")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


async def size_limit_compressed(ctx: CaseContext) -> Outcome:
    """SPEC 9.1 with compression: the limit is on the inflated message, decided while inflating."""
    own = spawn.OwnServer([*spawn.server_argv(ctx), "--compression", "--max-message-size", str(COMPRESSED_LIMIT)])
    async with own as endpoint:
        receiver = await own.join(endpoint, ctx.nick("rx"), compress=False)
        senders: list[str] = []

        def relayed() -> int:
            return sum(1 for m in receiver.messages for nick in senders if m.data.startswith((nick + SAID).encode()))

        seen, problems = [], []
        senders.append(ctx.nick("z"))
        sender = await own.join(endpoint, senders[-1], compress=True)
        exact = b"a" * COMPRESSED_LIMIT
        await sender.send_frame(OP_TEXT, deflate_message(exact), rsv=RSV1)
        line = (senders[-1] + SAID).encode() + exact
        ok = await receiver.wait_until(lambda: any(m.data == line for m in receiver.messages), REPLY_TIMEOUT)
        seen.append(f"{COMPRESSED_LIMIT} bytes ({len(deflate_message(exact))} compressed): "
                    + ("relayed" if ok else "not relayed intact"))  # fmt: skip
        if not ok:
            problems.append("a message of exactly the limit was not relayed")
        for label, raw in (("one byte over", exact + b"a"), ("a 16 MiB deflate bomb", bytes(BOMB_BYTES))):
            if label != "one byte over":  # a new sender: the first one was closed
                senders.append(ctx.nick("z"))
                sender = await own.join(endpoint, senders[-1], compress=True)
            before, rss_before = relayed(), await _stats_rss(endpoint)
            payload = deflate_message(raw)
            obs = await sender.observe_close(await sender.send_frame(OP_TEXT, payload, rsv=RSV1), REPLY_TIMEOUT)
            rss_after = await _stats_rss(endpoint)
            await asyncio.sleep(0.2)
            text = f"{label} ({len(payload)} B compressed): {obs.describe()}"
            if rss_before is not None and rss_after is not None:
                grew = rss_after - rss_before
                text += f", RSS {grew / 2**20:+.1f} MiB"
                if grew > BOMB_BYTES // 2:
                    problems.append(f"{label}: inflated in full (RSS +{grew / 2**20:.0f} MiB)")
            seen.append(text)
            if not (obs.kind == "close" and obs.code == 1009):
                problems.append(f"{label}: expected close 1009")
            if relayed() > before:
                problems.append(f"{label}: relayed")
    return Outcome(not problems, "; ".join(seen) + (f" — {', '.join(problems)}" if problems else ""))
