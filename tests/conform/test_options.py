"""Server options: what servers wsbench starts are told, and what every server is expected to do."""

from __future__ import annotations

import argparse

import pytest

from wsbench.conform.options import (
    GATE_DEFAULTS,
    ServerOptions,
    add_option_arguments,
    given_options,
    parse_server_args,
    resolve,
)
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
        "allowed_origin": ("https://a.example",),
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
    assert started.ping_interval == GATE_DEFAULTS["ping_interval"] and started.max_connections == 40
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
    assert flags[flags.index("--allowed-origin") + 1] == "https://chat.example"
    # the flags read back as the same expectations
    assert resolve(False, parse_server_args(flags, "x")) == options
