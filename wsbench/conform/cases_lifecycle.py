"""The conformance cases of a connection's and a server's life, as data: pings (SPEC 10, 8.6), the slow
consumer (11, 7.4), TCP_NODELAY (13.1), shutdown (12.1) and the start-up contract (15.2). Their steps are
in :mod:`wsbench.conform.ws_checks` and :mod:`wsbench.conform.measure`; the table they are part of is
:mod:`wsbench.conform.cases`.
"""

from __future__ import annotations

from wsbench.conform import measure as m
from wsbench.conform import ws_checks as w
from wsbench.conform.model import Case

LIFECYCLE_CASES: tuple[Case, ...] = (
    # --- pings
    Case(
        "pings.interval",
        "10.1",
        "server pings",
        lambda o: (
            f"a ping every {o.ping_interval:g} s, the first {o.ping_interval:g} s after the handshake"
            if o.ping_interval
            else "no pings (ping_interval 0)"
        ),
        w.pings_interval,
        duration_hint=3.0,
    ),
    Case(
        "pings.timeout",
        "10.2",
        "client never pongs",
        lambda o: (
            f"close 1011 no sooner than {o.ping_timeout:g} s after the ping (SPEC 10.2), TCP closed within "
            f"{o.ping_timeout + 1:g} s of it; leave line to the others"
        ),
        w.pings_timeout,
        conns=2,
        duration_hint=4.0,
        rfc="RFC 6455 §5.5.2",
    ),
    Case(
        "pings.text_is_not_pong",
        "10.2",
        "client talks but never pongs",
        lambda o: f"still closed with 1011 within {o.ping_timeout + 1:g} s of the ping: only a pong counts",
        w.pings_text_is_not_pong,
        duration_hint=4.0,
        rfc="RFC 6455 §5.5.3",
    ),
    Case(
        "pings.pong_keeps",
        "10.3",
        "client pongs",
        "stays connected however long it is silent",
        w.pings_pong_keeps,
        duration_hint=3.0,
    ),
    Case(
        "pings.client_ping",
        "8.6",
        "client pings",
        "a pong with the same payload",
        w.pings_client_ping,
        rfc="RFC 6455 §5.5.2",
    ),
    # --- slow consumer (one shared measurement)
    Case(
        "slow_consumer.close",
        "11.1",
        "one client stops reading under a broadcast",
        lambda o: (
            f"it is closed with 1008 (or dropped) once {o.send_buffer_limit} bytes are queued; "
            "leave line once; counted in /stats"
        ),
        m.slow_consumer_close,
        exclusive=True,
        timeout=25.0,
        duration_hint=6.0,
    ),
    Case(
        "slow_consumer.memory",
        "11.3",
        "server memory with a slow client",
        lambda o: (
            f"RSS grows at most {(m.RSS_ALLOWANCE + 4 * o.send_buffer_limit) / 2**20:.1f} MiB, or levels off "
            f"during a {m.STALL_DURATION:g} s stall far below what an unbounded queue would hold"
        ),
        m.slow_consumer_memory,
        exclusive=True,
        timeout=25.0,
    ),
    Case(
        "slow_consumer.others_latency",
        "7.4",
        "other clients with a slow client",
        f"their median within {m.LATENCY_FACTOR:g}x (+{m.LATENCY_SLACK_MS:g} ms), p99 within "
        f"{m.LATENCY_FACTOR:g}x (+{m.TAIL_SLACK_MS:g} ms) of an equally long run without it; nothing lost",
        m.slow_consumer_others,
        exclusive=True,
        timeout=25.0,
    ),
    # --- TCP
    Case(
        "nodelay.conversation",
        "13.1",
        "two frames sent back to back to a client that just sent",
        lambda o: (
            "no delayed-ACK stall (TCP_NODELAY on)"
            if o.nodelay
            else "a ~40 ms stall (started with --no-nodelay: the check proves it)"
        ),
        m.nodelay_conversation,
        exclusive=True,
        duration_hint=2.0,
    ),
    # --- shutdown (last: it stops the server)
    Case(
        "shutdown.sigterm",
        "12.1",
        "SIGTERM",
        "every client gets close 1001, no leave lines; exit status 0 as soon as all answered (within 3 s)",
        w.shutdown_sigterm,
        conns=3,
        last=True,
        needs_started=True,
    ),
    # --- start-up contract
    Case(
        "startup.bad_option",
        "15.2",
        "started with --max-message-size 0",
        "exit status 2 with a one-line message on stderr (no traceback, no listening line)",
        w.startup_bad_option,
        conns=0,
        needs_started=True,
        duration_hint=1.0,
    ),
)
