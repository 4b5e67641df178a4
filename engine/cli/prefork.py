"""Serving on several processes: one listening socket, N forked waitress processes (``crm serve --workers``).

One waitress process runs Python on one core at a time (the GIL); N processes
accepting on the same socket use N.  Each child opens its own runtime after
the fork (database connections are never shared across processes).  The
parent forwards SIGTERM and Ctrl+C to the children and returns once all of
them have exited.  Per-process state stays per process: each has its own
token cache and its own per-user request slots.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, inheritable by forked children."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def serve_forked(make_app: Callable[[], Any], sock: socket.socket, workers: int, threads: int) -> None:
    """Fork ``workers`` children, each serving ``make_app()`` on ``sock``; wait for them all."""
    import waitress

    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the child: its own runtime, its own waitress on the shared socket
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                waitress.serve(make_app(), sockets=[sock], threads=threads, ident="crm", _quiet=True)
            except KeyboardInterrupt:
                pass
            except BaseException as e:  # a child that cannot start says why; the others go on
                print(f"crm serve worker {os.getpid()} stopped: {type(e).__name__}: {e}", file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def stop(_signum: int, _frame: Any) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        if pid in children:
            children.remove(pid)
