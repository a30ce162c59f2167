"""The rich terminal summary of a load run, rendered from :func:`wsbench.core.summary.summarize`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wsbench.console import make_console, print_table
from wsbench.core.server_stats import drift_line
from wsbench.core.summary import generator_bound

STATUS_STYLE = {"completed": "green", "interrupted": "yellow", "broken": "bold red", "truncated": "yellow"}


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"


def _num(v: float | int | None, fmt: str = "{:,}") -> str:
    return "-" if v is None else fmt.format(v)


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024 / 1024:,.1f} MiB"


def render(summary: dict[str, Any], console: Console | None = None) -> None:
    """The summary on ``console`` (default: stdout; in CI logs every line stays whole: wsbench.console)."""
    c = console or make_console()
    sc = summary.get("scenario") or {}
    target = summary.get("target") or {}
    status = summary.get("status", "?")
    title = Text.assemble(
        ("wsbench ", "bold"),
        (str(sc.get("name") or "run"), "bold cyan"),
        "  ",
        (status, STATUS_STYLE.get(status, "")),
    )
    c.print(title)
    where = target.get("url") or ""
    server = target.get("server") or ("command" if target.get("command") else target.get("mode")) or ""
    c.print(
        f"[dim]target[/] {escape(str(server))} {escape(str(where))}   "
        f"[dim]clients[/] {sc.get('clients')}  [dim]senders[/] {sc.get('senders')}"
        + (f"  [dim]stalled[/] {sc.get('stalled_clients')}" if sc.get("stalled_clients") else "")
        + f"   [dim]measured[/] {summary.get('measured_s', 0):.1f} s of {summary.get('duration_s') or 0:.1f} s"
    )
    if summary.get("reason"):
        c.print(f"[bold]reason:[/] {escape(str(summary['reason']))}")

    # the title on a line of its own: as a table title it would wrap to the table's width
    c.print("[italic]latency (ms): per delivery, from the intended send time (corrected) and the actual one[/]")
    lat = Table(header_style="bold")
    lat.add_column("")
    for col in ("p50", "p90", "p99", "p99.9", "max", "count"):
        lat.add_column(col, justify="right")
    rows = [
        ("from intended send", "latency"),
        ("from actual send", "latency_uncorrected"),
        ("fan-out, to the last", "fanout"),
        ("connect", "connect"),
    ]
    if (summary.get("latency_probes") or {}).get("count"):  # the probe receivers (kernel stamps)
        rows[1:1] = [
            ("probes: user space", "latency_probes"),
            ("probes: at the socket", "latency_socket"),
            ("probes: generator's delay", "generator_delay"),
        ]
    for label, key in rows:
        h = summary.get(key) or {}
        lat.add_row(
            label,
            _ms(h.get("p50")),
            _ms(h.get("p90")),
            _ms(h.get("p99")),
            _ms(h.get("p99_9")),
            _ms(h.get("max")),
            _num(h.get("count")),
        )
    print_table(c, lat)

    d = summary.get("delivery") or {}
    r = summary.get("rate") or {}
    lost = d.get("lost")
    lost_style = "green" if lost == 0 else ("bold red" if lost else "yellow")
    ratio = d.get("loss_ratio")
    c.print(
        f"[bold]deliveries[/] expected {_num(d.get('expected'))}  delivered {_num(d.get('delivered'))}  "
        f"lost [{lost_style}]{_num(lost) if lost is not None else 'unknown'}[/]"
        + (f" ({ratio:.4%})" if ratio else "")
        + f"  duplicated {_num(d.get('duplicated'))}  reordered {_num(d.get('reordered'))}"
    )
    odd = _uncounted(summary)
    if odd:
        c.print("[bold yellow]not counted[/] " + "  ".join(f"{name} {_num(n)}" for name, n in odd))
    c.print(
        f"[bold]rates[/] target {_num(r.get('target'), '{:,.0f}')}/s  sent {_num(r.get('sent'), '{:,.0f}')}/s  "
        f"delivered {_num(r.get('delivered'), '{:,.0f}')}/s   "
        f"[bold]connect[/] ok {_num((summary.get('connect') or {}).get('ok'))} "
        f"errors {_num((summary.get('connect') or {}).get('errors'))}"
    )
    closes = summary.get("closes") or {}
    errors = summary.get("errors") or {}
    if closes.get("total") or errors.get("total"):
        by_code = ", ".join(f"{k}: {v}" for k, v in sorted((closes.get("by_code") or {}).items()))
        by_kind = ", ".join(f"{k}: {v}" for k, v in sorted((errors.get("by_kind") or {}).items()))
        c.print(f"[bold]closes[/] {by_code or 'none'}   [bold]errors[/] {by_kind or 'none'}")

    stages = summary.get("stages") or []
    if len(stages) > 1 or summary.get("capacity"):
        st = Table(title="stages", title_justify="left", header_style="bold")
        for col in ("stage", "target/s", "sent/s", "delivered/s", "p50 ms", "p99 ms", "lost", "verdict"):
            st.add_column(col, justify="left" if col == "stage" else "right")
        for s in stages:
            verdict = {True: "[green]held[/]", False: "[red]broke[/]", None: ""}[s.get("passed")]
            st.add_row(
                escape(str(s["name"])),
                _num(s.get("rate_target"), "{:,.0f}"),
                _num(s.get("rate_sent"), "{:,.0f}"),
                _num(s.get("rate_delivered"), "{:,.0f}"),
                _ms(s.get("latency_p50")),
                _ms(s.get("latency_p99")),
                _num(s.get("lost")),
                verdict,
            )
        print_table(c, st)
    cap = summary.get("capacity")
    if cap:
        if cap.get("highest_rate_held") is not None:
            c.print(
                f"[bold]capacity:[/] highest rate that held: [bold green]{cap['highest_rate_held']:,.0f}/s[/]"
                + (f" (broke at {cap['broke_at_rate']:,.0f}/s)" if cap.get("broke_at_rate") else " (never broke)")
            )
        else:
            c.print("[bold]capacity:[/] [red]no stage held[/]")
        if generator_bound(summary):
            c.print(
                "[yellow]capacity:[/] the generator was the bottleneck in the deciding stage: the limit may be its own"
            )

    g = summary.get("generator") or {}
    c.print(
        f"[bold]generator[/] CPU {_num(g.get('cpu_s'), '{:.2f}')} s  "
        f"{_num(g.get('cpu_us_per_delivery'), '{:.2f}')} us/delivery  peak {_num(g.get('cpu_pct_max'), '{:.0f}')}%  "
        f"loop lag max {_num(g.get('loop_lag_ms_max'), '{:.1f}')} ms  "
        f"send lag max {_num(g.get('send_lag_ms_max'), '{:.1f}')} ms  fds {_num(g.get('open_fds_max'))}"
        + (f"  got {g['cpu_got_ratio']:.0%} of the CPU it asked for" if g.get("cpu_got_ratio") is not None else "")
    )
    if g.get("delay_detail"):  # what the generator added (measured); a bottleneck is also a warning below
        c.print(f"[dim]self-check:[/] {escape(str(g['delay_detail']))}")
    churn = summary.get("churn")
    if churn:
        c.print(f"[bold]churn[/] receivers replaced: {churn['left']:,} left, {churn['joined']:,} joined")
    srv = summary.get("server")
    if srv:
        c.print(
            f"[bold]server[/] RSS max {_bytes(srv.get('rss_bytes_max'))} (last {_bytes(srv.get('rss_bytes_last'))})  "
            f"connections max {_num(srv.get('connections_max'))}  messages in {_num(srv.get('messages_in'))}  "
            f"deliveries out {_num(srv.get('deliveries_out'))}  slow-consumer closes "
            f"{_num(srv.get('slow_consumer_closes'))}"
        )
        if srv.get("cpu_us_per_delivery") is not None:
            c.print(
                f"[bold]server CPU[/] {_num(srv.get('cpu_s_measured'), '{:.2f}')} s  "
                f"{_num(srv.get('cpu_us_per_delivery'), '{:.2f}')} us/delivery  "
                f"mean {_num(srv.get('cpu_pct_mean'), '{:.0f}')}% of a core (measured intervals, from /stats cpu_s)"
            )
        growth = drift_line(srv)
        if growth:
            c.print(f"[bold]server growth[/] {escape(growth)}")
    verdicts = summary.get("thresholds") or []
    if verdicts:
        c.print("[bold]thresholds[/]")
        for v in verdicts:
            mark = "[green]pass[/]" if v["passed"] else "[bold red]FAIL[/]"
            observed = v.get("observed")
            unit = (" " + v["unit"]) if v.get("unit") else ""
            obs = f"observed {observed:,.4g}{unit}" if observed is not None else "observed no data"
            if observed is None and v.get("reason") and v["reason"] != "no data":
                obs = f"no data: {v['reason']}"  # why, where the summary says (e.g. too short to estimate drift)
            c.print(f"  {mark}  {escape(v['expr'])}  [dim]({escape(obs)})[/]")
    for w in summary.get("warnings") or []:
        c.print(f"[yellow]warning:[/] {escape(str(w))}")
    c.print(f"[dim]results file:[/] {escape(str(summary.get('file')))}")


def _uncounted(summary: dict[str, Any]) -> list[tuple[str, int]]:
    """What the accounting saw but could not count (and latencies above the histograms' ceiling)."""
    d = summary.get("delivery") or {}
    out = [
        ("back to sender (SPEC 7.2)", d.get("back_to_sender")),
        ("frames without a trailer", d.get("no_trailer")),
        ("messages never sent (replayed or forged)", d.get("never_sent")),
        ("sends skipped", (summary.get("messages") or {}).get("send_skipped")),
        ("latencies above 60 s", (summary.get("latency") or {}).get("above_ceiling")),
    ]
    return [(name, int(n)) for name, n in out if n]
