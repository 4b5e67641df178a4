"""The engine's API against the peer a Python team would build instead: Django + Django REST Framework.

Both serve the same lead model -- fields, indexes, a validation rule (an email
or a phone), an audit row per change, token auth, own-records permission, a
version-checked PATCH -- from a SQLite file, each in its own process behind
the same WSGI server (waitress, 8 threads), measured over HTTP in one run by
the same client:

* create one lead (requests/s; target: ours >= 1.5x DRF);
* GET 50 leads as JSON (median latency; target >= 1.5x);
* a filtered, sorted list over 1,000,000 leads (100,000 quick), p95 (target >= 1.0x);
* PATCH with a version check (requests/s; no target);
* requests/s of GET 50 under 8 concurrent clients (``wrk`` when installed), for both, and for our server
  with ``--workers 2`` against one process (target >= 1.7x with 4 cores or more; with fewer, the two server
  processes and ``wrk`` share the cores and the target is >= 1.2x).

Needs ``pip install django djangorestframework`` (and Debian's ``wrk`` for the concurrent rows).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REGIONS = ("east", "north", "south", "west")
INDUSTRIES = ("manufacturing", "services", "it", "finance", "education", "other")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:3]} exited: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Client:
    """One keep-alive HTTP connection with a bearer-ish header."""

    def __init__(self, port: int, auth: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": auth, "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers={**self.headers, **(headers or {})})
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None


# --------------------------------------------------------------------------- the two sides


class Side:
    """How one server is asked the same questions."""

    name: str
    port: int
    client: Client

    def create(self, i: int) -> int:
        raise NotImplementedError

    def get50(self) -> None:
        raise NotImplementedError

    def listed(self, i: int) -> None:
        raise NotImplementedError

    def patch(self, lead_id: int, version: int, i: int) -> int:
        raise NotImplementedError

    def get50_url(self) -> str:
        raise NotImplementedError


def _body(i: int) -> dict[str, Any]:
    return {"company": f"Peer Co {i}", "phone": f"138{i:08d}", "industry": INDUSTRIES[i % 6],
            "region": REGIONS[i % 4], "budget": "1000.50"}


class Ours(Side):
    name = "engine"

    def __init__(self, port: int, token: str) -> None:
        self.port, self.client, self.token = port, Client(port, f"Bearer {token}"), token

    def create(self, i: int) -> int:
        status, made = self.client.call("POST", "/api/v1/records/lead", _body(i))
        assert status == 201, made
        return int(made["id"])

    def get50(self) -> None:
        status, page = self.client.call("GET", "/api/v1/records/lead?limit=50")
        assert status == 200 and len(page["items"]) == 50, page

    def listed(self, i: int) -> None:
        q = f"filter=region%20%3D%3D%20%27{REGIONS[i % 4]}%27&sort=-created_at&limit=50"
        status, page = self.client.call("GET", f"/api/v1/records/lead?{q}")
        assert status == 200 and len(page["items"]) == 50, page

    def patch(self, lead_id: int, version: int, i: int) -> int:
        status, got = self.client.call("PATCH", f"/api/v1/records/lead/{lead_id}", {"company": f"Patched {i}"},
                                       {"If-Match": str(version)})
        assert status == 200, got
        return int(got["version"])

    def get50_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/records/lead?limit=50"


class Drf(Side):
    name = "drf"

    def __init__(self, port: int, token: str) -> None:
        self.port, self.client, self.token = port, Client(port, f"Token {token}"), token

    def create(self, i: int) -> int:
        status, made = self.client.call("POST", "/leads", _body(i))
        assert status == 201, made
        return int(made["id"])

    def get50(self) -> None:
        status, page = self.client.call("GET", "/leads?limit=50")
        assert status == 200 and len(page["results"]) == 50, page

    def listed(self, i: int) -> None:
        status, page = self.client.call("GET", f"/leads?region={REGIONS[i % 4]}&limit=50")
        assert status == 200 and len(page["results"]) == 50, page

    def patch(self, lead_id: int, version: int, i: int) -> int:
        status, got = self.client.call("PATCH", f"/leads/{lead_id}", {"company": f"Patched {i}"},
                                       {"If-Match": str(version)})
        assert status == 200, got
        return int(got["version"])

    def get50_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/leads?limit=50"


# --------------------------------------------------------------------------- data


def _rows(n: int, owner: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(11)
    start = dt.datetime(2024, 1, 1)
    for i in range(n):
        at = (start + dt.timedelta(seconds=30 * i)).strftime("%Y-%m-%d %H:%M:%S.%f")
        yield (f"Load Co {i}", f"139{i:08d}", rng.choice(INDUSTRIES), rng.choice(REGIONS), "new", owner, 1, at, at)


def _load(db: Path, table: str, columns: list[str], n: int, owner: int, extra: dict[str, Any]) -> None:
    cols = columns + list(extra)
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    conn = sqlite3.connect(db)
    try:
        batch: list[tuple[Any, ...]] = []
        for row in _rows(n, owner):
            batch.append((*row, *extra.values()))
            if len(batch) >= 50_000:
                conn.executemany(sql, batch)
                batch.clear()
        conn.executemany(sql, batch)
        conn.commit()
        conn.execute("ANALYZE")
    finally:
        conn.close()


_COLUMNS = ["company", "phone", "industry", "region", "status", "owner_id", "version", "created_at", "updated_at"]


def prepare_ours(root: Path, n: int) -> tuple[Path, str]:
    """The manufacturing workspace on a SQLite file, a sales rep, a token, ``n`` leads the rep owns."""
    from engine.dsl.scaffold import init_workspace
    from engine.runtime import users
    from engine.runtime.context import Actor
    from engine.runtime.runtime import Runtime
    from engine.runtime.schema.operations import apply_workspace, compile_workspace

    folder = root / "acme"
    init_workspace(folder, industry="manufacturing", name="acme", locale="en", currency="CNY",
                   phone_region="CN")
    url = f"sqlite:///{folder / 'crm.db'}"
    apply_workspace(compile_workspace(folder), url, yes=True, allow_destructive=False, purge=False, message="b",
                    author="b", echo=lambda _s: None, confirm=lambda _q: True, export_dir=folder / "exports")
    rt = Runtime.open(url)
    try:
        with rt.unit(Actor.system()) as uow:
            rep = users.create_user(uow, "rep", roles=["sales"])
            token = users.create_token(uow, "rep", "bench")
    finally:
        rt.close()
    _load(folder / "crm.db", "lead", _COLUMNS, n, rep, {})
    return folder, token


def prepare_drf(root: Path, n: int) -> tuple[Path, str]:
    """The DRF peer's SQLite file, its user and token, ``n`` leads the user owns (in a child process)."""
    db = root / "drf.db"
    code = ("import sys; from bench.peers import drf; drf.setup(sys.argv[1]); print(drf.make_user('rep'))")
    token = subprocess.run([sys.executable, "-c", code, str(db)], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()[-1]
    conn = sqlite3.connect(db)
    owner = conn.execute("SELECT id FROM auth_user WHERE username = 'rep'").fetchone()[0]
    conn.close()
    _load(db, "leads_lead", _COLUMNS, n, owner, {})
    return db, token


# --------------------------------------------------------------------------- measurements


def _rate(fn: Callable[[int], Any], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def _times(fn: Callable[[int], Any], n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def _wrk(url: str, auth: str, seconds: int = 8) -> float | None:
    """Requests/s of ``url`` under 8 concurrent connections (wrk), or None when wrk is not installed."""
    if shutil.which("wrk") is None:
        return None
    cmd = ["wrk", "-t2", "-c8", "-H", f"Authorization: {auth}", url]
    subprocess.run([*cmd[:1], "-d3s", *cmd[1:]], capture_output=True, check=True)  # warm every process first
    out = subprocess.run([*cmd[:1], f"-d{seconds}s", *cmd[1:]], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    return float(match.group(1)) if match else None


def _row(name: str, ours: float, drf: float, unit: str, target: str, higher_is_better: bool = True) -> dict[str, Any]:
    ratio = ours / drf if higher_is_better else drf / ours
    return {"name": name, "value": ours, "unit": unit, "baseline": drf, "ratio": ratio, "target": target}


def compare(ours: Ours, drf: Drf, n: int, total: int) -> list[dict[str, Any]]:
    for side in (ours, drf):  # warm both (imports, caches, prepared statements)
        for i in range(20):
            side.get50()
            side.create(10**6 + i)
    rounds = [(_rate(ours.create, n), _rate(drf.create, n)) for _ in range(3)]  # interleaved, best of 3
    rows = [_row("create one lead, req/s (DRF = baseline)", max(r[0] for r in rounds), max(r[1] for r in rounds),
                 "req/s", ">= 1.5x")]
    get = [(statistics.median(_times(lambda _i: ours.get50(), n)),
            statistics.median(_times(lambda _i: drf.get50(), n))) for _ in range(3)]
    rows.append(_row("GET 50 leads as JSON, median ms", min(g[0] for g in get), min(g[1] for g in get), "ms",
                     ">= 1.5x", higher_is_better=False))
    p95 = [(statistics.quantiles(_times(ours.listed, n), n=20)[18],
            statistics.quantiles(_times(drf.listed, n), n=20)[18]) for _ in range(3)]
    rows.append(_row(f"list filter+sort over {total:,} leads, p95 ms", min(p[0] for p in p95),
                     min(p[1] for p in p95), "ms", ">= 1.0x", higher_is_better=False))
    rates = []
    for _ in range(3):
        pair = []
        for side in (ours, drf):
            lead, version = side.create(2 * 10**6), 1

            def step(i: int, side: Side = side, lead: int = lead) -> None:
                nonlocal version
                version = side.patch(lead, version, i)

            pair.append(_rate(step, n))
        rates.append(pair)
    rows.append(_row("PATCH with a version check, req/s", max(r[0] for r in rates), max(r[1] for r in rates),
                     "req/s", ""))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    try:
        import django  # noqa: F401
        import rest_framework  # noqa: F401
    except ImportError:
        return [{"name": "DRF peer skipped: pip install django djangorestframework", "value": None, "target": ""}]
    total, n = (100_000, 100) if quick else (1_000_000, 300)
    with tempfile.TemporaryDirectory(prefix="crm-bench-peers-") as tmp:
        root = Path(tmp)
        folder, our_token = prepare_ours(root, total)
        drf_db, drf_token = prepare_drf(root, total)
        crm = [sys.executable, "-m", "engine.cli", "serve", str(folder), "--max-per-user", "0", "--timeout", "0"]
        scaling = {}
        for workers in (1, 2):  # first, on the untouched data: one process against two
            port = _free_port()
            with _server([*crm, "--port", str(port), "--workers", str(workers)], port):
                scaling[workers] = _wrk(f"http://127.0.0.1:{port}/api/v1/records/lead?limit=50", f"Bearer {our_token}")
        p1, p2 = _free_port(), _free_port()
        with _server([*crm, "--port", str(p1), "--workers", "1"], p1), \
                _server([sys.executable, "-m", "bench.peers.drf.serve", str(drf_db), str(p2)], p2):
            ours, drf = Ours(p1, our_token), Drf(p2, drf_token)
            theirs = _wrk(drf.get50_url(), f"Token {drf_token}")
            rows = compare(ours, drf, n, total)
    one, two = scaling[1], scaling[2]
    if one is None or theirs is None or two is None:
        rows.append({"name": "concurrent rows skipped: apt-get install wrk", "value": None, "target": ""})
        return rows
    rows.append(_row("GET 50 under 8 concurrent clients, req/s (1 process each)", one, theirs, "req/s", ""))
    cores = os.cpu_count() or 1
    # two server processes and the load generator share the machine: 1.7x needs a core for each of them
    target = ">= 1.7x" if cores >= 4 else ">= 1.2x"
    rows.append({"name": f"GET 50 under 8 clients: crm serve --workers 2 vs 1 ({cores} cores, wrk on the same "
                         "machine)", "value": two, "unit": "req/s", "baseline": one, "ratio": two / one,
                 "target": target})
    return rows


if __name__ == "__main__":
    from engine.benchrunner import format_table

    print(format_table(run(quick="--quick" in sys.argv)))
