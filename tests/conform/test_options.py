"""Server options: what servers wsbench starts are told, and what every server is expected to do."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from wsbench_servers.options import build_parser, check_option
from wsbench_servers.policy import origin_allowed

from wsbench.conform.checks import make_origin
from wsbench.conform.http_client import Endpoint
from wsbench.conform.options import (
    GATE_DEFAULTS,
    ServerOptions,
    add_option_arguments,
    given_options,
    parse_server_args,
    resolve,
)
from wsbench.conform.session import CaseContext
from wsbench.errors import UsageError
from wsbench.target import option_flags


def parse(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_option_arguments(parser)
    return given_options(parser.parse_args(argv))


def test_only_given_options_are_reported() -> None:
    assert parse([]) == {}
    assert parse(["--max-message-size", "1024", "--no-nodelay", "--allowed-origin", "https://A.example/"]) == {
        "max_message_size": 1024,
        "nodelay": False,
        "allowed_origin": ("https://a.example:443",),  # SPEC 6.3's canonical form, as the servers keep it
    }


def test_bad_values_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse(["--ping-interval", "-1"])
    with pytest.raises(UsageError, match="--server tornado"):
        parse_server_args(["--max-message-size", "zero"], "--server tornado")


def test_resolve_precedence() -> None:
    url = resolve(False, {})
    assert url == ServerOptions()  # a --url server is expected to run SPEC defaults unless told otherwise
    started = resolve(True, {})
    assert started.ping_interval == GATE_DEFAULTS["ping_interval"] and started.max_connections == 64
    assert started.send_buffer_limit > started.max_message_size  # a max-size frame fits in the buffer
    cli = resolve(True, {"ping_interval": 3.0, "max_connections": 9})
    assert (cli.ping_interval, cli.max_connections, cli.ping_timeout) == (3.0, 9, 2.0)
    extra = resolve(True, {"ping_interval": 3.0}, parse_server_args(["--ping-interval", "2", "--verbose"], "x"))
    assert extra.ping_interval == 2.0


def test_flags_passed_to_a_started_server() -> None:
    options = resolve(True, {"nodelay": False, "max_message_size": 1024})
    flags = option_flags(options.as_flags_dict())
    assert flags[:2] == ["--max-message-size", "1024"]
    assert "--no-nodelay" in flags and "--compression" not in flags
    assert flags[flags.index("--ping-interval") + 1] == "1"  # whole seconds printed without ".0"
    assert flags[flags.index("--allowed-origin") + 1] == "https://chat.example:443"
    # the flags read back as the same expectations
    assert resolve(False, parse_server_args(flags, "x")) == options


# -- SPEC 6.3: one reading of --allowed-origin for the gate and the servers

#: Allow-list entries that an ad-hoc normaliser (lower-case, strip one "/") reads differently from SPEC 6.3.
ORIGIN_ENTRIES = [
    "http://Host:80",  # a default port written out: the same entry as http://host
    "http://host",
    "HTTPS://Chat.Example/",  # case in the scheme and host, a trailing slash
    "https://chat.example:443",
    "http://[::1]:8080",
    "http://xn--bcher-kva.example",  # IDNA as written: no conversion either way
]
#: Entries SPEC 6.3 refuses (15.1: a usage error), which the servers refuse too.
BAD_ENTRIES = ["http://bücher.example", "http://user@host", "http://host/path", "ws://host", "http://host:99999",
               "http://a.example, http://b.example", "null", ""]  # fmt: skip


@pytest.mark.parametrize("entry", ORIGIN_ENTRIES)
def test_the_gate_reads_an_allowed_origin_as_the_servers_do(entry: str) -> None:
    server = build_parser("x", "test").parse_args(["--allowed-origin", entry]).allowed_origin
    assert parse(["--allowed-origin", entry])["allowed_origin"] == tuple(server)
    assert parse_server_args(["--allowed-origin", entry], "x")["allowed_origin"] == tuple(server)
    assert resolve(False, {"allowed_origin": (entry,)}).allowed_origin == tuple(server)


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_the_gate_refuses_what_the_servers_refuse(entry: str) -> None:
    with pytest.raises(ValueError):
        check_option("allowed_origin", entry)
    with pytest.raises(SystemExit):
        parse(["--allowed-origin", entry])
    with pytest.raises(UsageError, match="allowed-origin"):
        resolve(False, {"allowed_origin": (entry,)})


def test_the_origin_cases_expect_what_spec_6_3_decides() -> None:
    """What the Origin cases send for an allow-list entry, judged by the servers' own policy: the
    "allowed" origin is allowed, the other-scheme one is not, whatever way the entry was written."""

    def sent(options: ServerOptions, kind: str) -> str | None:
        ctx = CaseContext(Endpoint("127.0.0.1", 8888), options, None, "t", {}, asyncio.Lock())
        return make_origin(ctx, kind)

    for entry in ORIGIN_ENTRIES:
        options = resolve(False, {"allowed_origin": (entry,)})
        allowed, other = sent(options, "allowed"), sent(options, "allowed_other_scheme")
        assert allowed is not None and other is not None
        assert origin_allowed([allowed], "127.0.0.1:8888", options.allowed_origin), (entry, allowed)
        assert not origin_allowed([other], "127.0.0.1:8888", options.allowed_origin), (entry, other)
        assert "://" in allowed and not allowed.endswith((":80", ":443"))  # a browser leaves a default port out
    # the gate's own default entry, written as a user would write it, is the servers' canonical entry
    assert resolve(True, {}).allowed_origin == ("https://chat.example:443",)
