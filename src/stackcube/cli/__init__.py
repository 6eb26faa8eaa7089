"""The ``stackcube`` command line: a thin layer over the public API.

``stackcube build CATALOG`` commits a cube, ``refresh REPO`` brings it up to date, ``verify REPO`` checks its
sources, ``info REPO`` and ``log REPO`` describe one; ``inspect HREF`` prints what the extractor finds in a TIFF
and ``plan CATALOG`` how a search would be gridded; ``demo`` writes GeoTIFFs and a STAC catalog of its own and
builds a cube of them (no network, no services).

``build`` and ``refresh`` take ``--scheduler tcp://HOST:8786`` (a Dask cluster) or ``--processes N`` (a local
process pool) to read headers and write references there; the one commit stays in the command.

Exit codes: 0 done; 2 any error (one line on stderr, nothing committed; ``--debug`` adds the traceback); 3 nothing
to do (``refresh`` found nothing new or changed, ``verify`` found changed or vanished sources and was not asked to
``--fix`` them); 130 interrupted (Ctrl-C; one line says whether a snapshot was committed); 141 the reader of the
output went away (``| head``), quietly.

Modules, each importing only the ones before it: ``_exit`` (exit codes; errors, warnings, closed pipes and
interrupts as the user sees them), ``_commands`` (what each command calls and prints), ``_parser`` (the
arguments).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from datetime import UTC, datetime
from typing import NoReturn

from stackcube.cli._commands import committed_to
from stackcube.cli._exit import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_UNCHANGED,
    interrupted,
    one_line,
    quiet_stdout,
    show_warning,
    stdout_closed,
)
from stackcube.cli._parser import make_parser
from stackcube.errors import StackcubeWarning

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_UNCHANGED", "main", "run"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stackcube`` command."""
    args = make_parser().parse_args(argv)
    began = datetime.now(UTC)  # a snapshot written since is this command's, if it is interrupted
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            warnings.simplefilter("default", StackcubeWarning)  # said to the user, once each
            return int(args.func(args))
    except KeyboardInterrupt:
        print(f"stackcube: {interrupted(committed_to(args), began)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        if not stdout_closed():
            return _fail(args, exc)
        # the reader of our output went away (`stackcube info REPO | head -1`): as other command-line tools, stop
        # quietly
        quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        return _fail(args, exc)


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    if args.debug:
        traceback.print_exception(exc)
    print(f"stackcube: error: {one_line(exc)}", file=sys.stderr)
    return EXIT_ERROR


def run() -> NoReturn:
    """The ``stackcube`` command: :func:`main`, then out without the interpreter's teardown.

    Once the answer is printed and flushed, the process ends with ``os._exit``: tearing down Icechunk's native
    runtime while Python finalizes crashed once (SIGSEGV, exit code -11 instead of 2) in ~930 test runs, which a
    scheduler would count as a failure of the wrong kind. Nothing of stackcube's needs the teardown.
    """
    code = main()
    if stdout_closed(poll=False):  # the last of the output could not be written: its reader went away
        quiet_stdout()
        code = code or EXIT_BROKEN_PIPE
    sys.stderr.flush()
    os._exit(code)
