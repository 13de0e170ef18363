"""The package's one error type for problems the user can fix, and how it reaches the user.

Everything a user can get wrong (data, options, files, formats) raises :class:`JacobiNerfError` with a message that
names the file or option and the fix. :func:`report_user_errors` makes an uncaught one print as one short block and
exit non-zero, without a traceback; every other exception keeps Python's (or the previous hook's) traceback, since
that is a bug report. The jacobinerf pipeline installs it when it is built (so it covers ``ns-train jacobinerf``,
``ns-eval``, ``ns-viewer`` and ``ns-render`` on a jacobinerf run, and nothing else of nerfstudio's), and every
``jacobinerf-*`` command installs it first.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Optional, Type

WORKER_TRACEBACK = "Original Traceback"
"""What torch's data-loader workers put before the worker's traceback when they re-raise an error."""


class JacobiNerfError(ValueError):
    """A problem the user can fix; the message says what is wrong, where, and what to do."""

    def __init__(self, message: str) -> None:  # one argument: data-loader workers re-raise it from its message
        super().__init__(message)

    @property
    def message(self) -> str:
        """The message without the worker traceback torch adds when it re-raises in the main process."""
        text = str(self.args[0]) if self.args else ""
        if WORKER_TRACEBACK in text:
            text = text.rsplit(f"{type(self).__name__}: ", 1)[-1].strip()
        return text


def format_user_error(error: JacobiNerfError) -> str:
    return f"\njacobinerf: {error.message}\n"


def report_user_errors() -> None:
    """Installs the reporting of uncaught :class:`JacobiNerfError` (idempotent; other exceptions are untouched)."""
    previous = sys.excepthook
    if getattr(previous, "reports_user_errors", False):
        return

    def hook(kind: Type[BaseException], error: BaseException, trace: Optional[TracebackType]) -> None:
        if isinstance(error, JacobiNerfError):
            sys.stderr.write(format_user_error(error))
            sys.stderr.flush()
            return  # Python then exits with status 1
        previous(kind, error, trace)

    hook.reports_user_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def require(condition: bool, option: str, problem: str) -> None:
    """Raises ``JacobiNerfError("<option>: <problem>")`` unless ``condition`` (option checks, before any work)."""
    if not condition:
        raise JacobiNerfError(f"{option} {problem}")
