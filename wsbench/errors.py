"""The one exception tree of wsbench.

Every error a user can cause or meet is a :class:`WsbenchError`; the CLI prints its message (never a
traceback) and exits with its ``exit_code``:

* 0 - all thresholds met / all conformance cases as expected
* 1 - a threshold failed / a conformance case failed unexpectedly
* 2 - usage, scenario or input-file error (:class:`UsageError` and subclasses)
* 3 - the run itself broke: server died, could not connect (:class:`RunBroken` and subclasses)
"""

from __future__ import annotations

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
