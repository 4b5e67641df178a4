"""Serving on several processes: N forked waitress processes on one port (``crm serve --workers``).

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


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening.

    ``reuse_port``: several processes each bind their own socket to the port
    (``SO_REUSEPORT``) and the kernel spreads new connections over them.  One
    socket shared by forked processes would let whichever process accepts
    first keep every keep-alive connection, and the others sit idle.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def check_port(host: str, port: int) -> None:
    """OSError now (address in use, no permission) rather than in every child."""
    listening_socket(host, port, reuse_port=True).close()


def serve_forked(make_app: Callable[[], Any], host: str, port: int, workers: int, threads: int) -> None:
    """Fork ``workers`` children, each serving ``make_app()`` on its own socket of ``host:port``; wait for them."""
    import waitress

    check_port(host, port)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the child: its own runtime, its own waitress, its own socket on the shared port
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                sock = listening_socket(host, port, reuse_port=True)
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
