"""The RFC 6455 case families (for both profiles), generated from tables: each row is a case id, its
Autobahn testsuite number, what is sent (a :class:`~wsbench.conform.rfc.Script`) and what is expected.

Families: payload lengths at the 7/16/64-bit length encodings (Autobahn 1.x), pings and pongs (2.x),
reserved bits (3.x), reserved opcodes (4.x), fragmentation (5.x, 6.1), UTF-8 (6.x) and frames after the
client's close (7.1.x), the close reason and payload limits (7.3.x), and where it matters the same
script with one write per frame, one byte per write or in chops (Autobahn's "frame-wise" and
"octet-wise" chops).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping

from wsbench.conform import checks as c
from wsbench.conform import rfc as r
from wsbench.conform import ws_checks as w
from wsbench.conform.model import Case
from wsbench.conform.rfc import F, cont, ping, pong, script, text
from wsbench.conform.wire import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT

BOTH = ("chat", "echo")
ECHO = ("echo",)
FAIL = "close 1002 (a drop without close frame: non-strict)"
FAIL_AFTER = "the first message {0}, then close 1002 (a drop: non-strict); the ping after the bad frame not answered"
UTF8_FAIL = "close 1007 (echo profile: a drop without close frame is non-strict)"


def case(
    id: str,
    clause: str,
    title: str,
    expected: str,
    check: c.Check,
    *,
    rfc: str,
    autobahn: str | None,
    conns: int = 2,
    profiles: tuple[str, ...] = BOTH,
    duration_hint: float = 0.5,
) -> Case:
    return Case(
        id,
        clause,
        title,
        expected,
        check,
        rfc=rfc,
        conns=conns,
        autobahn=autobahn,
        profiles=profiles,  # type: ignore[arg-type]
        duration_hint=duration_hint,
    )


WRITES = {"one": "", "frames": ".frames", "bytes": ".bytes"}


def variants(spec: r.Script, numbers: Mapping[str, str | None]) -> Iterator[tuple[str, str | None, r.Script]]:
    """The same script in the given write modes: (id suffix, Autobahn number, script)."""
    for how, number in numbers.items():
        yield WRITES[how], number, dataclasses.replace(spec, write=how)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# 1.x payload lengths


PAYLOAD_LENGTHS = ((0, "1"), (125, "2"), (126, "3"), (127, "4"), (128, "5"), (65535, "6"), (65536, "7"))


def payload_cases() -> Iterator[Case]:
    for opcode, kind, group in ((OP_TEXT, "text", "1.1"), (OP_BINARY, "binary", "1.2")):
        fill = b"*" if opcode == OP_TEXT else b"\xfe"
        for n, sub in PAYLOAD_LENGTHS:
            spec = script([F(opcode, fill * n)], messages=[(opcode, fill * n)])
            yield case(
                f"payload.{kind}.{n}", "9.1" if n > 125 else "7.2", f"{kind} message of {n} bytes",
                f"{'relayed (chat) or echoed' if opcode == OP_TEXT else 'echoed'} byte for byte",
                r.run_script(spec), rfc="RFC 6455 §5.2", autobahn=f"{group}.{sub}",
                profiles=BOTH if opcode == OP_TEXT else ECHO,
            )  # fmt: skip
        spec = script([F(opcode, fill * 65536)], messages=[(opcode, fill * 65536)], write="chops")
        yield case(
            f"payload.{kind}.65536.chops", "9.1", f"{kind} message of 65536 bytes written in 997-byte chops",
            "delivered byte for byte", r.run_script(spec), rfc="RFC 6455 §5.2", autobahn=f"{group}.8",
            profiles=BOTH if opcode == OP_TEXT else ECHO,
        )  # fmt: skip
    sizes = (0, 1, 125, 126, 127, 1000, 65535, 3, 2, 65536)
    frames = [text(b"c" * n) for n in sizes]
    spec = script(frames, messages=[(OP_TEXT, b"c" * n) for n in sizes])
    yield case(
        "payload.coalesced", "7.3", "10 text messages of 0 to 65536 bytes coalesced in one write",
        "all delivered byte for byte, in order", r.run_script(spec),
        rfc="RFC 6455 §5.2", autobahn=None,
    )  # fmt: skip
    spec = script(frames[:5], messages=[(OP_TEXT, b"c" * n) for n in sizes[:5]], write="bytes")
    yield case(
        "payload.bytes", "7.3", "5 text messages of 0 to 127 bytes, one byte per write",
        "all delivered byte for byte, in order", r.run_script(spec), rfc="RFC 6455 §5.2", autobahn=None,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 2.x pings and pongs


def ping_cases() -> Iterator[Case]:
    rows: list[tuple[str, str, r.Script, dict[str, str | None], str]] = [
        ("pings.empty", "ping without payload", script([ping()], pongs=[b""]), {"one": "2.1"}, "a pong, empty"),
        ("pings.text", "ping with a short text payload", script([ping("Hello, world!")], pongs=["Hello, world!"]),
         {"one": "2.2"}, "a pong with the same payload"),
        ("pings.payload_125", "ping with 125 bytes of binary payload",
         script([ping(bytes(range(125)))], pongs=[bytes(range(125))]), {"one": "2.4", "bytes": "2.6"},
         "a pong with the same 125 bytes"),
        ("pings.unsolicited_pong", "unsolicited pong without payload", script([pong()]), {"one": "2.7"},
         "ignored: nothing comes back, the connection stays open"),
        ("pings.unsolicited_pong_payload", "unsolicited pong with payload", script([pong("unsolicited")]),
         {"one": "2.8"}, "ignored: nothing comes back, the connection stays open"),
        ("pings.unsolicited_pong_then_ping", "unsolicited pong, then a ping",
         script([pong("unsolicited"), ping("answer me")], pongs=["answer me"]), {"one": "2.9"},
         "one pong, for the ping"),
        ("pings.ten", "ten pings in a row", script([ping(f"ping {i}") for i in range(10)],
                                                   pongs=[f"ping {i}" for i in range(10)]),
         {"one": "2.10", "bytes": "2.11"}, "ten pongs with the payloads, in order"),
    ]  # fmt: skip
    for id_, title, spec, numbers, expected in rows:
        for suffix, number, variant in variants(spec, numbers):
            yield case(
                id_ + suffix, "8.6", title + r.WRITE_LABEL[variant.write], expected, r.run_script(variant),
                rfc="RFC 6455 §5.5.2" if "unsolicited" not in id_ else "RFC 6455 §5.5.3", autobahn=number, conns=1,
            )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 3.x reserved bits, 4.x reserved opcodes


def reserved_cases() -> Iterator[Case]:
    first = text("Hello, world!")
    delivered = [(OP_TEXT, "Hello, world!")]
    rsv_rows = [
        ("framing.rsv.after_text", "text with RSV=2 after a valid message, then a ping",
         [first, F(OP_TEXT, b"Hello, world!", rsv=2), ping("x")], delivered, {"one": "3.2"}),
        ("framing.rsv.value_3", "text with RSV=3 (two bits) after a valid message, then a ping",
         [first, F(OP_TEXT, b"Hello, world!", rsv=3), ping("x")], delivered, {"frames": "3.3"}),
        ("framing.rsv.value_4", "text with RSV=4 after a valid message, then a ping",
         [first, F(OP_TEXT, b"Hello, world!", rsv=4), ping("x")], delivered, {"bytes": "3.4"}),
        ("framing.rsv.binary", "binary frame with RSV=5", [F(OP_BINARY, b"\x00\xff\xfe\xfd", rsv=5)], [],
         {"one": "3.5"}),
        ("framing.rsv.ping", "ping with RSV=6", [F(OP_PING, b"ping", rsv=6)], [], {"one": "3.6"}),
        ("framing.rsv.close", "close frame with RSV=7", [F(OP_CLOSE, (1000).to_bytes(2, "big"), rsv=7)], [],
         {"one": "3.7"}),
    ]  # fmt: skip
    for id_, title, frames, msgs, numbers in rsv_rows:
        spec = script(frames, messages=msgs, end="protocol")
        for _suffix, number, variant in variants(spec, numbers):
            yield case(
                id_, "8.3", title + r.WRITE_LABEL[variant.write], FAIL_AFTER.format("delivered") if msgs else FAIL,
                r.run_script(variant), rfc="RFC 6455 §5.2", autobahn=number, conns=2 if msgs else 1,
            )  # fmt: skip
    # 4.1.2-4.1.5 (data opcodes 4-7) and 4.2.2-4.2.5 (control opcodes 12-15); 3 and 11 are
    # framing.reserved_opcode_data / framing.reserved_opcode_control
    for group, opcodes in (("4.1", (4, 5, 6, 7)), ("4.2", (12, 13, 14, 15))):
        for sub, op in enumerate(opcodes, start=2):
            payload = b"" if sub == 3 else b"reserved opcode payload"
            if sub == 2:
                frames, msgs, what = [F(op, payload)], [], f"frame with reserved opcode {op} and a payload"
            else:
                frames, msgs = [first, F(op, payload), ping("x")], delivered
                what = f"valid message, frame with reserved opcode {op}, then a ping"
            yield case(
                f"framing.opcode.{op}", "8.3", what, FAIL_AFTER.format("delivered") if msgs else FAIL,
                r.run_script(script(frames, messages=msgs, end="protocol")), rfc="RFC 6455 §5.2",
                autobahn=f"{group}.{sub}", conns=2 if msgs else 1,
            )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 5.x fragmentation (and 6.1 empty fragments)


def fragment_cases() -> Iterator[Case]:
    f1, f2 = text("fragment1", fin=False), cont("fragment2")
    whole = [(OP_TEXT, "fragment1fragment2")]
    stray_fin, stray_nofin = cont("non-continuation payload"), cont("non-continuation payload", fin=False)
    hello = text("Hello, world!")
    p1, p2 = "pongme 1!", "pongme 2!"
    pause = r.Burst((text("fragment1", fin=False), cont("fragment2", fin=False), ping(p1)), pause=0.5)
    rest = r.Burst((cont("fragment3", fin=False), cont("fragment4", fin=False), ping(p2), cont("fragment5")))
    ok_rows: list[tuple[str, str, r.Script, dict[str, str | None], str]] = [
        ("fragments.text_2", "text message in 2 fragments", script([f1, f2], messages=whole),
         {"one": "5.3", "frames": "5.4", "bytes": "5.5"}, "delivered as one message"),
        ("fragments.ping_between", "text in 2 fragments with a ping between them",
         script([f1, ping("ping payload"), f2], messages=whole, pongs=["ping payload"]),
         {"one": "5.6", "frames": "5.7", "bytes": "5.8"}, "the pong, and the message delivered intact"),
        ("fragments.pings_while_paused", "5 fragments with 2 pings between them and a 0.5 s pause",
         script(pause, rest, messages=[(OP_TEXT, "fragment1fragment2fragment3fragment4fragment5")], pongs=[p1, p2]),
         {"one": "5.19", "frames": "5.20"}, "the first pong during the pause (at once), the second, then the message"),
        ("fragments.empty_3", "text message in 3 empty fragments",
         script([text("", fin=False), cont("", fin=False), cont("")], messages=[(OP_TEXT, "")]), {"one": "6.1.2"},
         "delivered as one empty message"),
        ("fragments.empty_first_last", "3 fragments, the first and the last empty",
         script([text("", fin=False), cont("middle", fin=False), cont("")], messages=[(OP_TEXT, "middle")]),
         {"one": "6.1.3"}, "delivered as 'middle'"),
    ]  # fmt: skip
    for id_, title, spec, numbers, expected in ok_rows:
        for suffix, number, variant in variants(spec, numbers):
            yield case(
                id_ + suffix, "8.3", title + r.WRITE_LABEL[variant.write], expected, r.run_script(variant),
                rfc="RFC 6455 §5.4", autobahn=number, duration_hint=1.0 if "paused" in id_ else 0.5,
            )  # fmt: skip
    bad_rows: list[tuple[str, str, r.Script, dict[str, str | None]]] = [
        ("fragments.pong", "pong in 2 fragments", script([F(OP_PONG, b"ab", fin=False), cont("cd")], end="protocol"),
         {"one": "5.2"}),
        ("fragments.stray_then_text", "continuation (FIN=1) with nothing to continue, then a text message",
         script([stray_fin, hello], end="protocol"), {"one": "5.9", "frames": "5.10", "bytes": "5.11"}),
        ("fragments.stray_nofin_then_text", "continuation (FIN=0) with nothing to continue, then a text message",
         script([stray_nofin, hello], end="protocol"), {"one": "5.12", "frames": "5.13", "bytes": "5.14"}),
        ("fragments.stray_after_message", "a message in 2 fragments, then a stray continuation (FIN=0), then text",
         script([f1, f2, cont("fragment3", fin=False), text("fragment4")], messages=whole, end="protocol"),
         {"one": "5.15"}),
        ("fragments.stray_before_message_nofin", "twice: stray continuation (FIN=0), then a message in 2 fragments",
         script([stray_nofin, f1, f2, stray_nofin, f1, f2], end="protocol"), {"one": "5.16"}),
        ("fragments.stray_before_message_fin", "twice: stray continuation (FIN=1), then a message in 2 fragments",
         script([stray_fin, f1, f2, stray_fin, f1, f2], end="protocol"), {"one": "5.17"}),
    ]  # fmt: skip
    for id_, title, spec, numbers in bad_rows:
        for suffix, number, variant in variants(spec, numbers):
            expected = FAIL_AFTER.format("delivered").replace("; the ping after the bad frame not answered", "")
            yield case(
                id_ + suffix, "8.3", title + r.WRITE_LABEL[variant.write],
                expected if variant.messages else FAIL + "; nothing delivered", r.run_script(variant),
                rfc="RFC 6455 §5.4" if id_ != "fragments.pong" else "RFC 6455 §5.5", autobahn=number,
            )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 6.x UTF-8 (the groups of Markus Kuhn's UTF-8 decoder test, as Autobahn 6.5-6.23 uses them)


KOSME = "κόσμε".encode()


def _noncharacters() -> list[bytes]:
    out = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1, z2, z3 in itertools.product(b"\xf0\xf1\xf2\xf3\xf4", b"\x8f\x9f\xaf\xbf", b"\xbe\xbf"):
        if z1 == 0xF4 and z2 != 0x8F:
            continue  # above U+10FFFF
        out.append(bytes([z1, z2, 0xBF, z3]))
    return out


_MISSING = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80", b"\xdf",
            b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]  # fmt: skip
_HIGH_SURROGATES = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf"]

#: (id, Autobahn group, title, vectors); validity is RFC 3629's (Python's strict decoder).
UTF8_GROUPS: list[tuple[str, str, str, list[bytes]]] = [
    ("valid", "6.5", "valid multi-byte sequences",
     [b"hello\x24world", b"hello\xc2\xa2world", b"hello\xe2\x82\xacworld", b"hello\xf0\xa4\xad\xa2world", KOSME]),
    ("prefixes", "6.6", "every prefix of a valid multi-byte string", [KOSME[:i] for i in range(1, len(KOSME) + 1)]),
    ("first_of_length", "6.7", "first code point of each length", [b"\x00", b"\xc2\x80", b"\xe0\xa0\x80",
                                                                   b"\xf0\x90\x80\x80"]),
    ("five_six_bytes", "6.8", "5- and 6-byte sequences", [b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]),
    ("last_of_length", "6.9", "last code point of each length (U+007F, U+07FF, U+FFFF, U+10FFFF)",
     [b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"]),
    ("above_max", "6.10", "code points above U+10FFFF",
     [b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf\xbf"]),
    ("boundaries", "6.11", "boundary code points (U+D7FF, U+E000, U+FFFD, U+10FFFF, U+110000)",
     [b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80"]),
    ("continuation_bytes", "6.12", "unexpected continuation bytes",
     [b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf", b"\x80\xbf\x80\xbf\x80",
      b"\x80\xbf\x80\xbf\x80\xbf", bytes(range(0x80, 0xBF))]),
    ("lonely_start", "6.13", "lonely start bytes, each followed by a space",
     [b"".join(bytes([i, 0x20]) for i in range(a, b)) for a, b in
      ((0xC0, 0xDF), (0xE0, 0xEF), (0xF0, 0xF7), (0xF8, 0xFB), (0xFC, 0xFD))]),
    ("missing_last", "6.14", "sequences with the last continuation byte missing", _MISSING),
    ("missing_concatenated", "6.15", "all of those concatenated", [b"".join(_MISSING)]),
    ("impossible", "6.16", "impossible bytes (FE, FF)", [b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"]),
    ("overlong_slash", "6.17", "overlong encodings of '/'",
     [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf", b"\xfc\x80\x80\x80\x80\xaf"]),
    ("overlong_max", "6.18", "maximum overlong sequences",
     [b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf8\x87\xbf\xbf\xbf", b"\xfc\x83\xbf\xbf\xbf\xbf"]),
    ("overlong_nul", "6.19", "overlong encodings of NUL",
     [b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf8\x80\x80\x80\x80", b"\xfc\x80\x80\x80\x80\x80"]),
    ("surrogates", "6.20", "single UTF-16 surrogates",
     [*_HIGH_SURROGATES, b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]),
    ("surrogate_pairs", "6.21", "paired UTF-16 surrogates",
     [h + lo for h in _HIGH_SURROGATES for lo in (b"\xed\xb0\x80", b"\xed\xbf\xbf")]),
    ("noncharacters", "6.22", "noncharacters (valid UTF-8: delivered)", _noncharacters()),
    ("specials", "6.23", "Unicode specials U+FFF9-U+FFFF", [bytes([0xEF, 0xBF, b]) for b in range(0xB9, 0xC0)]),
]  # fmt: skip


def valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def utf8_cases() -> Iterator[Case]:
    for name, group, title, raw in UTF8_GROUPS:
        vectors = [(valid_utf8(v), v) for v in raw]
        n_valid = sum(ok for ok, _ in vectors)
        expected = (
            ("valid ones delivered intact" if n_valid else "")
            + (", " if n_valid and n_valid < len(vectors) else "")
            + (UTF8_FAIL.replace("close 1007", "invalid ones: close 1007") if n_valid < len(vectors) else "")
        )
        yield case(
            f"utf8.{name}", "8.2", f"{title} ({len(vectors)} vectors)", expected, r.utf8_group(vectors),
            rfc="RFC 6455 §8.1", autobahn=f"{group}.1-{group}.{len(vectors)}", conns=1 + r.UTF8_PARALLEL,
        )  # fmt: skip
    text_1_octet = "Hello-µ@ßöäüàá-UTF-8!!".encode()
    yield case(
        "utf8.valid_1_octet_fragments", "8.2", "valid UTF-8 in fragments of one byte (ending inside code points)",
        "delivered intact",
        r.run_script(script([text(text_1_octet[:1], fin=False),
                             *[cont(text_1_octet[i : i + 1], fin=i == len(text_1_octet) - 1)
                               for i in range(1, len(text_1_octet))]],
                            messages=[(OP_TEXT, text_1_octet)])),
        rfc="RFC 6455 §5.6", autobahn="6.2.3",
    )  # fmt: skip
    invalid = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
    yield case(
        "utf8.invalid_1_octet_fragments", "8.2", "invalid UTF-8 (a surrogate) in fragments of one byte",
        UTF8_FAIL, r.run_script(script([text(invalid[:1], fin=False),
                                        *[cont(invalid[i : i + 1], fin=i == len(invalid) - 1)
                                          for i in range(1, len(invalid))]], end="utf8")),
        rfc="RFC 6455 §8.1", autobahn="6.3.2",
    )  # fmt: skip
    bad = b"\xf4\x90\x80\x80"  # U+110000
    for position, parts in (
        ("first", [b"ab" + bad, b"cd", b"ef"]),
        ("middle", [b"ab", b"cd" + bad, b"ef"]),
        ("last", [b"ab", b"cd", b"ef" + bad]),
    ):
        frames = [text(parts[0], fin=False), cont(parts[1], fin=False), cont(parts[2])]
        yield case(
            f"utf8.invalid_in_{position}_fragment", "8.2", f"U+110000 in the {position} of 3 fragments", UTF8_FAIL,
            r.run_script(script(frames, end="utf8")), rfc="RFC 6455 §8.1", autobahn=None,
        )  # fmt: skip
    yield case(
        "utf8.truncated_at_end", "8.2", "a message ending inside a 3-byte sequence", UTF8_FAIL,
        r.run_script(script([text(b"hello \xe2\x82")], end="utf8")), rfc="RFC 6455 §8.1", autobahn=None,
    )  # fmt: skip
    yield case(
        "utf8.truncated_at_end_fragmented", "8.2", "a fragmented message whose last fragment ends inside a sequence",
        UTF8_FAIL, r.run_script(script([text(b"hello ", fin=False), cont(b"\xe2\x82")], end="utf8")),
        rfc="RFC 6455 §8.1", autobahn=None,
    )  # fmt: skip
    first = KOSME
    informational = (
        "close 1007; informational: how long after the invalid byte (fail-fast, or only once the message is "
        "complete: RFC 6455 sets no timing)"
    )
    for name, number, three, chops in (
        ("fail_fast.fragments", "6.4.1", (first, bad, b"edited"), False),
        ("fail_fast.fragments_exact", "6.4.2", (first, b"\xf4\x90", b"\x80\x80edited"), False),
        ("fail_fast.chops", "6.4.3", (first, bad, b"edited"), True),
        ("fail_fast.chops_exact", "6.4.4", (first, b"\xf4\x90", b"\x80\x80edited"), True),
    ):
        yield case(
            f"utf8.{name}", "8.2", "invalid UTF-8 sent in 3 parts with pauses" + (" (chops of one frame)" if chops
                                                                                   else " (fragments)"),
            informational, r.utf8_fail_fast(three, chops), rfc="RFC 6455 §8.1", autobahn=number, duration_hint=1.5,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 7.x close


def close_cases() -> Iterator[Case]:
    yield case(
        "close.valid.1002", "8.4", "client closes with 1002",
        "a close frame (the same code SHOULD be echoed), then the server closes TCP", w.close_valid(1002),
        rfc="RFC 6455 §7.4", autobahn="7.7.3", conns=1,
    )  # fmt: skip
    yield case(
        "close.reason_123", "8.4", "close reason of exactly 123 bytes (a 125-byte payload)",
        "a close frame, then the server closes TCP", w.close_valid(1000, reason=b"*" * 123),
        rfc="RFC 6455 §5.5", autobahn="7.3.5", conns=1,
    )  # fmt: skip
    yield case(
        "close.payload_126", "8.5", "close payload of 126 bytes (over the control-frame limit)",
        "close 1002, or the connection dropped (non-strict)",
        w.close_invalid(None, payload=(1000).to_bytes(2, "big") + b"*" * 124), rfc="RFC 6455 §5.5",
        autobahn="7.3.6", conns=1,
    )  # fmt: skip
    hello = text("Hello, world!")
    rows = [
        ("close.after_close.message_first", "a message, then the client's close", [], [hello], 1, "7.1.1",
         "the message delivered, then the close answered with 1000 and TCP closed"),
        ("close.after_close.second_close", "a second close frame after the client's close",
         [F(OP_CLOSE, (1000).to_bytes(2, "big"))], [], 0, "7.1.2", "the first close answered, the second ignored"),
        ("close.after_close.ping", "a ping after the client's close", [ping("after close")], [], 0, "7.1.3",
         "close answered with 1000; no pong"),
        ("close.after_close.text", "a text message after the client's close", [hello], [], 0, "7.1.4",
         "close answered with 1000; the message ignored (nothing delivered)"),
        ("close.after_close.fragment", "fragment 1, the client's close, then fragment 2", [cont("fragment2")],
         [text("fragment1", fin=False)], 0, "7.1.5", "close answered with 1000; nothing delivered"),
    ]  # fmt: skip
    for id_, title, after, before, messages, number, expected in rows:
        yield case(
            id_, "8.4", title, expected, r.close_after_close(after, title, before, messages), rfc="RFC 6455 §5.5.1",
            autobahn=number,
        )  # fmt: skip


def echo_probe_case() -> Case:
    return case(
        "messaging.echo", "7.2", "a text and a binary message (the echo profile's first case)",
        "both echoed as sent; otherwise the target is not an echo server and the profile stops",
        r.echo_probe, rfc="RFC 6455 §6.1", autobahn="1.1.2, 1.2.2", profiles=ECHO, conns=1,
    )  # fmt: skip


#: Autobahn numbers of the chat gate's own RFC-level cases (ids unchanged), and which of them the echo
#: profile runs too.
AUTOBAHN_OF_EXISTING: dict[str, str] = {
    "messaging.relay_empty": "1.1.1",
    "messaging.relay_ascii": "1.1.2",
    "framing.rsv3": "3.1",
    "framing.reserved_opcode_data": "4.1.1",
    "framing.reserved_opcode_control": "4.2.1",
    "framing.ping_fragmented": "5.1",
    "framing.ping_oversize": "2.5",
    "framing.stray_continuation": "5.9",
    "framing.data_during_fragment": "5.18",
    "framing.utf8_valid_split": "6.2.2",
    "framing.utf8_invalid": "6.16",
    "close.valid.empty": "7.3.1",
    "close.invalid.one_byte": "7.3.2",
    "close.invalid.reason_utf8": "7.5.1",
    "close.invalid.5000": "7.13.1",
    "close.invalid.65535": "7.13.2",
    "pings.client_ping": "2.3",
    **{f"close.valid.{code}": f"7.7.{i}" for i, code in enumerate(
        (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999), start=1) if code != 1002},
    **{f"close.invalid.{code}": f"7.9.{i}" for i, code in enumerate(
        (0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999), start=1)},
}  # fmt: skip

ECHO_PREFIXES = ("framing.", "close.valid.", "close.invalid.", "limits.size.")
ECHO_IDS = {"messaging.relay_ascii", "messaging.relay_unicode", "messaging.relay_emoji", "messaging.relay_empty",
            "pings.client_ping", "handshake.no_upgrade", "handshake.no_version"}  # fmt: skip


def annotate(existing: list[Case]) -> list[Case]:
    """The chat gate's cases with their Autobahn numbers, and the echo profile on the RFC-level ones."""
    out = []
    for case_ in existing:
        rfc_level = case_.id in ECHO_IDS or case_.id.startswith(ECHO_PREFIXES)
        out.append(
            dataclasses.replace(
                case_,
                autobahn=case_.autobahn or AUTOBAHN_OF_EXISTING.get(case_.id),
                profiles=BOTH if rfc_level else case_.profiles,  # type: ignore[arg-type]
            )
        )
    return out


def rfc_cases() -> list[Case]:
    return [
        echo_probe_case(),
        *payload_cases(),
        *ping_cases(),
        *reserved_cases(),
        *fragment_cases(),
        *utf8_cases(),
        *close_cases(),
    ]
