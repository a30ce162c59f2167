"""The one exception tree of wsbench.

Every error a user can cause or meet is a :class:`WsbenchError`; the CLI prints its message (never a
traceback) and exits with its ``exit_code``:

* 0 - all thresholds met / all conformance cases as expected
* 1 - a threshold failed / a conformance case failed unexpectedly
* 2 - usage, scenario or input-file error (:class:`UsageError` and subclasses)
* 3 - the run itself broke: server died, could not connect (:class:`RunBroken` and subclasses)
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_THRESHOLD_FAILED = 1
EXIT_USAGE = 2
EXIT_RUN_BROKEN = 3


class WsbenchError(Exception):
    """Base of every error wsbench reports to a user."""

    exit_code = EXIT_RUN_BROKEN


class UsageError(WsbenchError):
    """Bad command line, bad option value, unreadable input file."""

    exit_code = EXIT_USAGE


class ScenarioError(UsageError):
    """A scenario file that does not validate. Names the file, line and key, and what was expected."""

    def __init__(self, path: str, line: int | None, key: str, problem: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {key}: {problem}")


class OpenFilesLimitError(UsageError):
    """The open-file limit (``ulimit -n``) is below what the command needs, and cannot be raised."""


class ResultsFileError(UsageError):
    """A results file that cannot be read at all (a truncated one still reads, with a warning)."""


class RunBroken(WsbenchError):
    """The run could not go on: the target is unreachable or died. Results so far are kept."""

    exit_code = EXIT_RUN_BROKEN


class ServerStartError(RunBroken):
    """A server wsbench was asked to start did not come up (exited, or printed no address in time)."""


class ServerDied(RunBroken):
    """A server wsbench started exited while it was being measured."""


class ConnectError(RunBroken):
    """Could not log in or open the WebSocket at all."""


class NotAChatServer(ConnectError):
    """The target answers, but not as SPEC.md says (an HTTP server that is no chat server)."""


class ResultsWriteError(RunBroken):
    """Writing the results file failed during a run (disk full, quota, I/O error): the run is broken.

    ``written`` is how many whole records the file holds (header included); ``got`` says so in words."""

    def __init__(self, path: str, error: str, written: int, got: str = "") -> None:
        self.path = path
        self.error = error
        self.written = written
        self.got = got or f"it holds the first {written} records"
        super().__init__(f"cannot write the results file {path}: {error}; {self.got}")


#: What to do about an error of the environment, by errno (the README's "Troubleshooting" says more)
_OS_HINTS = {
    errno.EMFILE: "the open-file limit of this process is reached: raise it (`ulimit -n`) or run fewer clients",
    errno.ENFILE: "the system-wide open-file table is full (fs.file-max): close other programs or raise it",
    errno.ENOSPC: "the disk is full: free space or write the results elsewhere (-o)",
    errno.EDQUOT: "the disk quota is exceeded: free space or write the results elsewhere (-o)",
    errno.EROFS: "the file system is read-only: write the results elsewhere (-o)",
    errno.EACCES: "permission denied",
    errno.EADDRNOTAVAIL: "no local port is free (net.ipv4.ip_local_port_range): run fewer clients",
    errno.ENOMEM: "out of memory",
}


def describe_os_error(exc: OSError) -> str:
    """An :class:`OSError` of the environment as one line: what failed, on what, and what to do."""
    what = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno or 0, "")
    on = f" ({exc.filename})" if exc.filename else ""
    hint = _OS_HINTS.get(exc.errno or 0)
    return f"{what}{on} [{name or exc.errno}]" + (f"; {hint}" if hint and hint != what.lower() else "")


def environment_error(exc: OSError) -> RunBroken:
    """An :class:`OSError` that reached the command line: an error of the environment, not of wsbench."""
    return RunBroken(f"the system refused: {describe_os_error(exc)}")
