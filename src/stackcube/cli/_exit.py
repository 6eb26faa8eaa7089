"""How a command ends: exit codes, an error or a warning as one line, a closed pipe, an interrupt."""

from __future__ import annotations

import os
import select
import shlex
import sys
from datetime import datetime
from typing import Any

from stackcube.errors import StackcubeError, StackcubeWarning

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_UNCHANGED",
    "interrupted",
    "one_line",
    "quiet_stdout",
    "show_warning",
    "stdout_closed",
]

EXIT_ERROR = 2
"""A stackcube error (or bad arguments): one line on stderr, nothing committed."""
EXIT_UNCHANGED = 3
"""``refresh``: nothing changed, nothing committed; ``verify``: some source changed or vanished (no ``--fix``)."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C): one line on stderr says whether a snapshot was committed."""
EXIT_BROKEN_PIPE = 141
"""The reader of stdout went away (``| head``): a quiet stop, with the code of a shell tool stopped by SIGPIPE."""


def one_line(exc: BaseException) -> str:
    """An error as one line: a stackcube error says what to do (naming the command); anything else is named, with
    where to look."""
    if isinstance(exc, StackcubeError):
        return " ".join(exc.for_cli().split()) or type(exc).__name__
    text = " ".join(str(exc).split())
    if isinstance(exc, ValueError | TypeError):
        return text or type(exc).__name__
    where = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return f"unexpected {where}: {text[:500]} (run again with --debug for the traceback, and report it)"


def show_warning(  # noqa: PLR0917 - the signature of warnings.showwarning
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """stackcube's warnings as one line on stderr, as errors are (``stackcube: warning: ...``); others as Python
    shows them, naming where they come from."""
    if issubclass(category, StackcubeWarning):
        print(f"stackcube: warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        import warnings

        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def stdout_closed(*, poll: bool = True) -> bool:
    """Whether stdout's reader went away: flushing it fails with a broken pipe, or (with ``poll``, after a write
    that failed and dropped what it held) polling it reports the error or hang-up of a pipe or socket whose other
    end is closed."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    if not poll:
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured output), or no poll here
        return False


def quiet_stdout() -> None:
    """Send what is left for stdout to /dev/null, so that the flush at exit does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def interrupted(target: tuple[str, str] | None, began: datetime) -> str:
    """What a Ctrl-C left behind, from the branch as it is now: a write commits once, at its end, so the branch
    either holds a snapshot written since the command ``began`` or not. Says which, or that it could not be told
    (asked only once interrupted: the command itself pays nothing for it)."""
    if target is None:
        return "interrupted; nothing was changed"
    repo, branch = target
    where = f"branch {branch} of {shlex.quote(repo)}"
    try:
        from stackcube.store import branch_head

        head = branch_head(repo, branch)
    except BaseException:  # a second Ctrl-C, or anything else: only this line is at stake
        return f"interrupted; whether a snapshot was committed could not be told: stackcube log {shlex.quote(repo)}"
    if head is not None and not head.parent_id:  # Icechunk's first, empty snapshot: nothing of the command's
        return f"interrupted; nothing was committed ({where} holds only the empty snapshot of a new repository)"
    if head is None or head.written_at < began:
        return f"interrupted; nothing was committed ({where} is where it was)"
    return f"interrupted after the commit: {where} is at snapshot {head.id}"
