"""The open-file limit (``RLIMIT_NOFILE``): raise it as far as a command needs, or refuse up front.

Every client connection, every connection a server accepts, the results file and the event loop's own
descriptors count against one per-process limit. Most Linux desktops and CI runners start processes
with a *soft* limit of 1,024 and a much higher *hard* limit; a process may raise its own soft limit up
to the hard one (what Locust does at start, to 10,000). So, before anything connects:

* :func:`ensure_open_files` raises the soft limit to what the command needs (never lowers it, never
  touches the hard limit: that is the administrator's);
* when even the hard limit is too low it raises :class:`~wsbench.errors.OpenFilesLimitError` (exit 2)
  saying how many descriptors are needed, how many may be opened, and the command that fixes it.

The limit is inherited by child processes, so a server wsbench starts (and Locust's master and
workers) get the raised limit too. It is a per-process limit: a run of ``N`` clients against a server
wsbench starts needs about ``N`` plus a margin in *each* of the two processes, not ``2N`` in one.

Only the standard library is used, so the reference servers can call this too (``needed_for_server``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wsbench.errors import OpenFilesLimitError

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows: there is nothing to raise
    resource = None  # type: ignore[assignment]

#: Descriptors a wsbench process or a server holds besides its connections: stdio, the event loop's
#: epoll and wake-up pipes, timerfd, the results file, a server's pipes and listening sockets, DNS,
#: /proc reads, /stats polling, imported shared libraries.
MARGIN = 64

UNLIMITED = -1


@dataclass(frozen=True)
class OpenFiles:
    """The limit as it is after :func:`ensure_open_files`: ``soft`` (in force) and ``hard``."""

    soft: int
    hard: int  # UNLIMITED (-1) for RLIM_INFINITY
    raised_from: int | None = None  # the soft limit before, when it was raised


def current() -> tuple[int, int]:
    """``(soft, hard)`` with RLIM_INFINITY as ``UNLIMITED``; ``(UNLIMITED, UNLIMITED)`` where unknown."""
    if resource is None:
        return UNLIMITED, UNLIMITED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    return (UNLIMITED if soft == inf else int(soft)), (UNLIMITED if hard == inf else int(hard))


def needed_for_clients(clients: int, in_flight: int = 0) -> int:
    """Descriptors for a load generator holding ``clients`` connections, ``in_flight`` more being opened."""
    return int(clients) + int(in_flight) + MARGIN


def needed_for_server(max_connections: int) -> int:
    """Descriptors for a server that accepts up to ``max_connections`` WebSockets (plus logins, 503s)."""
    return int(max_connections) + MARGIN


def ensure_open_files(needed: int, what: str, *, fewer: str = "") -> OpenFiles:
    """Make sure this process (and the children it starts) may open ``needed`` descriptors.

    ``what`` says what needs them (``"300 clients against the aiohttp server wsbench starts"``);
    ``fewer`` is the user's other way out (``"--set clients=N"``). Raises the soft limit when it is
    lower than ``needed``; raises :class:`OpenFilesLimitError` when the hard limit is lower.
    """
    soft, hard = current()
    if soft == UNLIMITED or soft >= needed:
        return OpenFiles(soft, hard)
    if hard != UNLIMITED and hard < needed:
        raise OpenFilesLimitError(refusal(needed, what, soft, hard, fewer))
    assert resource is not None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ValueError, OSError) as exc:  # e.g. above fs.nr_open, or a sandbox that forbids it
        raise OpenFilesLimitError(refusal(needed, what, soft, hard, fewer, str(exc))) from None
    return OpenFiles(needed, hard, raised_from=soft)


def refusal(needed: int, what: str, soft: int, hard: int, fewer: str = "", error: str = "") -> str:
    """The message of a refusal: needed, allowed, and the commands that fix it."""
    allowed = f"at most {hard:,} (hard limit; soft limit {soft:,})" if hard != UNLIMITED else f"{soft:,}"
    target = _round_up(needed)
    why = f" (raising it failed: {error})" if error else ""
    alternative = f", or ask for less: {fewer}" if fewer else ""
    return (
        f"too few open files allowed: {what} needs {needed:,} file descriptors, this process may open "
        f"{allowed}{why}. Raise the limit for this shell with `sudo prlimit --pid $$ --nofile={target}:{target}` "
        f"(or `ulimit -Hn {target}; ulimit -n {target}` as root; for good: `nofile` in "
        f"/etc/security/limits.conf, LimitNOFILE={target} for a systemd service, "
        f"`docker run --ulimit nofile={target}:{target}`){alternative}"
    )


def _round_up(n: int) -> int:
    """A round number at or above ``n`` (1,000s), for the suggested command."""
    return int(math.ceil(n / 1000.0) * 1000)
