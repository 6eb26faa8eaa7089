"""moto's S3 server, run as ``moto_server`` is, whose writes are atomic as S3's are.

moto checks a conditional write (``If-Match``, ``If-None-Match``) and then makes it, unlocked, on one of its request
threads: two writes racing on one object can both pass the check, and the second silently replaces the first (a
lost update S3 never gives; Icechunk relies on these writes for its commits). Here writes run one at a time, so the
check and the write are one step; reads stay concurrent.

Run it as a script: ``python moto_atomic.py -H 127.0.0.1 -p PORT`` (moto_server's arguments).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import moto.server

READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AtomicWrites(moto.server.DomainDispatcherApplication):
    """moto's application, with every request but a read made under one lock."""

    writing = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in READS:
            return super().__call__(environ, start_response)
        with self.writing:
            answer = super().__call__(environ, start_response)
            try:
                return list(answer)  # the whole answer made under the lock
            finally:
                close = getattr(answer, "close", None)  # as a WSGI server would, once it is sent
                if close is not None:
                    close()


if __name__ == "__main__":
    moto.server.DomainDispatcherApplication = AtomicWrites  # type: ignore[misc]
    moto.server.main(sys.argv[1:])
