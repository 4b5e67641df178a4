"""Property test: the Python and SQL back ends agree on every input, nulls included.

Hypothesis writes random well-typed expressions over a small workspace (a
JSON-stored field of each kind, a reference to a second entity); each one is
evaluated in Python over every row and in one SQL query over the same rows,
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, reject, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select

from engine.dsl.expressions import EvalContext, compile_expression
from engine.dsl.model import Entity, Field, Option, Workspace, frozen_map
from engine.errors import ExpressionTypeError, SourceLocation
from engine.runtime import users
from engine.runtime.db import ensure_pg_functions, make_engine
from engine.runtime.sqlexpr import to_sql
from engine.runtime.storage import Schema, build_schema

EXAMPLES = 2000
ROWS = 48
NOW = dt.datetime(2024, 3, 31, 15, 30, 0, 250000, tzinfo=dt.UTC)
USER = 2
LOC = SourceLocation("parity.yaml", 1, 1)
ALPHABET = ["a", "B", "b", "z", "É", "é", "ß", " ", "-", "1", "Z", "ä"]


def _f(name: str, ftype: str, **kw: Any) -> Field:
    return Field(name=name, type=ftype, location=LOC, **kw)


def _entity(name: str, fields: list[Field]) -> Entity:
    return Entity(name, LOC, fields=frozen_map({f.name: f for f in fields}))


STAGES = ("new", "qualified", "won", "lost")
INDUSTRIES = ("tech", "retail", "manufacturing")
ACCOUNT = _entity("account", [
    _f("name", "string"), _f("industry", "picklist", options=tuple(Option(k) for k in INDUSTRIES)),
    _f("employees", "integer"), _f("rating", "decimal", storage="json"), _f("founded", "date"),
])
LEAD = _entity("lead", [
    _f("name", "string"), _f("code", "string", storage="json"), _f("budget", "money"), _f("score", "integer"),
    _f("rate", "percent", storage="json"), _f("stage", "picklist", options=tuple(Option(k) for k in STAGES)),
    _f("tags", "multi_picklist", options=(Option("vip"), Option("hot"), Option("cold"))),
    _f("labels", "multi_picklist", storage="json", options=(Option("vip"), Option("hot"))),
    _f("active", "boolean"), _f("flag", "boolean", storage="json"), _f("last_contact", "date"),
    _f("due", "date", storage="json"), _f("met_at", "datetime"), _f("seen_at", "datetime", storage="json"),
    _f("account", "reference", reference="account"), _f("rep", "user"),
])
WS = Workspace("parity", entities=frozen_map({"account": ACCOUNT, "lead": LEAD}))

# --------------------------------------------------------------------------- random rows

#: (id, name, manager); user 1 manages its own team east, user 3 manages west, team solo has none
TEAMS = [(1, "east", 1), (2, "west", 3), (3, "solo", None)]
#: (id, display name, team, manager): every branch of manager_of's rule
USERS = [(1, "Ann", 1, None), (2, "bob", 1, None), (3, "É", 2, 1), (4, "", 2, 2), (5, "z", None, None),
         (6, "Ann", 3, 5)]


def _directory(schema: Schema) -> dict[str, list[dict[str, Any]]]:
    teams = [{"id": i, "name": n, "manager_id": m, "created_at": NOW} for i, n, m in TEAMS]
    users = [{"id": i, "username": f"u{i}", "display_name": n, "team_id": t, "manager_id": m, "roles": [],
              "active": i != 4, "created_at": NOW} for i, n, t, m in USERS]
    return {"crm_teams": teams, "crm_users": users}


def _maybe(rng: random.Random, value: Any) -> Any:
    return None if rng.random() < 0.22 else value


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4)))


def _money(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(-100000, 100000)).scaleb(-2)


def _date(rng: random.Random) -> dt.date:
    return dt.date(2023, 1, 1) + dt.timedelta(days=rng.randint(0, 800))


def _datetime(rng: random.Random) -> dt.datetime:
    micro = 0 if rng.random() < 0.5 else rng.randint(0, 999999)
    return dt.datetime(2024, 3, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randint(0, 60 * 86400),
                                                                   microseconds=micro)


def _accounts(rng: random.Random) -> list[dict[str, Any]]:
    return [{"id": i, "name": _maybe(rng, _text(rng)), "industry": _maybe(rng, rng.choice(INDUSTRIES)),
             "employees": _maybe(rng, rng.randint(-5, 500)), "rating": _maybe(rng, _money(rng)),
             "founded": _maybe(rng, _date(rng))} for i in range(1, 7)]


def _lead(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "id": i, "name": _maybe(rng, _text(rng)), "code": _maybe(rng, _text(rng)),
        "budget": _maybe(rng, _money(rng)), "score": _maybe(rng, rng.randint(-50, 50)),
        "rate": _maybe(rng, _money(rng)), "stage": _maybe(rng, rng.choice(STAGES)),
        "tags": _maybe(rng, rng.sample(["vip", "hot", "cold"], rng.randint(0, 3))),
        "labels": _maybe(rng, rng.sample(["vip", "hot"], rng.randint(0, 2))),
        "active": _maybe(rng, rng.random() < 0.5), "flag": _maybe(rng, rng.random() < 0.5),
        "last_contact": _maybe(rng, _date(rng)), "due": _maybe(rng, _date(rng)),
        "met_at": _maybe(rng, _datetime(rng)), "seen_at": _maybe(rng, _datetime(rng)),
        "account": _maybe(rng, rng.randint(1, 6)), "rep": _maybe(rng, rng.randint(1, 6)),
        "owner_id": _maybe(rng, rng.randint(1, 6)),
    }


def _db_row(schema: Schema, entity: Entity, record: dict[str, Any]) -> dict[str, Any]:
    from engine.runtime.storage import to_json_value

    row: dict[str, Any] = {"id": record["id"], "created_at": NOW, "updated_at": NOW,
                           "owner_id": record.get("owner_id")}
    ext: dict[str, Any] = {}
    for field in entity.fields.values():
        value = record[field.name]
        if field.storage == "json":
            ext[field.column_name] = to_json_value(field, value)
        else:
            row[field.column_name] = value
    row["ext"] = ext
    return row


# --------------------------------------------------------------------------- random expressions

def _lit_num() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(-20, 20).map(str),
                     st.integers(-50000, 50000).map(lambda n: str(Decimal(n).scaleb(-2))))


def _lit_str() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(ALPHABET), max_size=3).map(lambda cs: '"' + "".join(cs) + '"')


NUM_FIELDS = ["budget", "score", "rate", "account.employees", "account.rating"]
STR_FIELDS = ["name", "code", "account.name", "stage", "account.industry", "owner.name", "owner.team",
              "rep.username", "rep.team"]
DATE_FIELDS = ["last_contact", "due", "account.founded", "$today"]
DT_FIELDS = ["met_at", "seen_at", "$now"]
BOOL_FIELDS = ["active", "flag"]


@cache
def expr(kind: str, depth: int = 3) -> st.SearchStrategy[str]:
    """Random expressions of ``kind`` (number, string, boolean, date, datetime), built once per depth."""
    if depth <= 0:
        return _LEAVES[kind]()
    return st.one_of(_LEAVES[kind](), _NODES[kind](depth - 1), _NODES[kind](depth - 1))


def _leaf_number() -> st.SearchStrategy[str]:
    return st.one_of(_lit_num(), st.sampled_from(NUM_FIELDS))


def _leaf_string() -> st.SearchStrategy[str]:
    return st.one_of(_lit_str(), st.sampled_from(STR_FIELDS))


def _leaf_boolean() -> st.SearchStrategy[str]:
    return st.sampled_from([*BOOL_FIELDS, "true", "false"])


def _node_number(d: int) -> st.SearchStrategy[str]:
    n = expr("number", d)
    return st.one_of(
        st.tuples(n, st.sampled_from(["+", "-", "*", "/", "%"]), n).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        n.map(lambda a: f"-({a})"), n.map(lambda a: f"round({a})"), n.map(lambda a: f"round({a}, 2)"),
        n.map(lambda a: f"abs({a})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), n, n).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(expr("boolean", d), n, n).map(lambda t: f"(if {t[0]} then {t[1]} else {t[2]})"),
        expr("string", d).map(lambda s: f"len({s})"),
        st.tuples(expr("date", d), st.sampled_from(DT_FIELDS)).map(lambda t: f"days_between({t[0]}, {t[1]})"),
        expr("date", d).map(lambda s: f"days_since({s})"),
        st.tuples(st.sampled_from(["year", "month"]), st.one_of(expr("date", d), st.sampled_from(DT_FIELDS)))
        .map(lambda t: f"{t[0]}({t[1]})"),
        st.sampled_from(["len(tags)", "len(labels)", "coalesce(score, 0)", "coalesce(budget, null, 1)"]),
    )


def _node_string(d: int) -> st.SearchStrategy[str]:
    s = expr("string", d)
    return st.one_of(
        st.tuples(st.sampled_from(["lower", "upper", "trim"]), s).map(lambda t: f"{t[0]}({t[1]})"),
        st.lists(s, min_size=1, max_size=3).map(lambda xs: f"concat({', '.join(xs)})"),
        st.tuples(s, s).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        st.tuples(expr("boolean", d), s, s).map(lambda t: f"(if {t[0]} then {t[1]} else {t[2]})"),
    )


def _node_boolean(d: int) -> st.SearchStrategy[str]:
    b, n, s = expr("boolean", d), expr("number", d), expr("string", d)
    ordered = st.one_of(st.tuples(n, n), st.tuples(s, s), st.tuples(expr("date", d), expr("date", d)),
                        st.tuples(expr("datetime", d), expr("datetime", d)),
                        st.tuples(expr("date", d), expr("datetime", d)),
                        st.tuples(expr("datetime", d), expr("date", d)))
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.tuples(ordered, ops).map(lambda t: f"({t[0][0]} {t[1]} {t[0][1]})"),
        st.tuples(b, st.sampled_from(["and", "or"]), b).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        b.map(lambda x: f"not ({x})"), st.tuples(b, b).map(lambda t: f"(({t[0]}) == ({t[1]}))"),
        st.tuples(st.one_of(n, s, b, expr("date", d)), st.sampled_from(["is null", "is not null", "== null",
                                                                        "!= null"]))
        .map(lambda t: f"(({t[0]}) {t[1]})"),
        st.tuples(st.sampled_from(["stage", "account.industry"]), st.sampled_from(["in", "not in"]),
                  st.lists(st.sampled_from(['"new"', '"won"', '"tech"', "null"]), max_size=3))
        .filter(lambda t: _options_ok(t[0], t[2]))
        .map(lambda t: f"({t[0]} {t[1]} [{', '.join(t[2])}])"),
        st.tuples(n, st.sampled_from(["in", "not in"]), st.lists(n, max_size=3))
        .map(lambda t: f"({t[0]} {t[1]} [{', '.join(t[2])}])"),
        st.tuples(st.sampled_from(['"vip"', '"hot"', "stage", "name"]), st.sampled_from(["in", "not in"]),
                  st.sampled_from(["tags", "labels"])).map(" ".join),
        st.tuples(st.sampled_from(["contains", "icontains", "startswith", "endswith"]), s, s)
        .map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.one_of(s, st.sampled_from(["tags", "labels", "budget", "due"])).map(lambda x: f"isblank({x})"),
        st.sampled_from(["stage == \"won\"", "$user == account", "account.industry != \"tech\"",
                         "coalesce(active, flag)", "(if flag then active else null)", "owner.active",
                         "manager_of(owner) == $user", "manager_of(manager_of(rep)) == owner",
                         "manager_of(owner) is null", "owner.team_id == 1", "rep == owner",
                         "manager_of(rep) != manager_of(owner)", "manager_of($user) == 1"]),
    )


def _options_ok(name: str, items: list[str]) -> bool:
    allowed = {"stage": STAGES, "account.industry": INDUSTRIES}[name]
    return all(i == "null" or i.strip('"') in allowed for i in items)


def _node_date(d: int) -> st.SearchStrategy[str]:
    dd, n = expr("date", d), st.one_of(st.integers(-40, 40).map(str), st.just("score"))
    return st.one_of(
        st.tuples(st.sampled_from(["add_days", "add_months"]), dd, n).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), dd, dd).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(expr("boolean", d), dd, dd).map(lambda t: f"(if {t[0]} then {t[1]} else {t[2]})"),
    )


def _node_datetime(d: int) -> st.SearchStrategy[str]:
    x, n = expr("datetime", d), st.one_of(st.integers(-40, 40).map(str), st.just("score"))
    return st.one_of(
        st.tuples(st.sampled_from(["add_days", "add_months"]), x, n).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), x, x).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(expr("boolean", d), x, x).map(lambda t: f"(if {t[0]} then {t[1]} else {t[2]})"),
    )


_LEAVES = {"number": _leaf_number, "string": _leaf_string, "boolean": _leaf_boolean,
           "date": lambda: st.sampled_from(DATE_FIELDS), "datetime": lambda: st.sampled_from(DT_FIELDS)}
_NODES = {"number": _node_number, "string": _node_string, "boolean": _node_boolean, "date": _node_date,
          "datetime": _node_datetime}
ANY_EXPR = st.one_of(*[expr(kind, 3) for kind in _LEAVES])

# --------------------------------------------------------------------------- comparison


def same(py: Any, db: Any) -> bool:
    """Equal, numbers within 1e-6 relative (SQLite computes decimals in binary floating point)."""
    if py is None or db is None or isinstance(py, bool) or isinstance(db, bool):
        return py is db or (py == db and type(py) is type(db))
    if isinstance(py, int | Decimal | float) and isinstance(db, int | Decimal | float):
        a, b = Decimal(str(py)), Decimal(str(db))
        return abs(a - b) <= Decimal("1e-6") * max(Decimal(1), abs(a))
    return bool(py == db)


class _Parity:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.schema = build_schema(WS, engine.dialect.name)
        rng = random.Random(20240331)
        self.accounts = _accounts(rng)
        self.leads = [_lead(rng, i) for i in range(1, ROWS + 1)]
        by_id = {a["id"]: a for a in self.accounts}
        with engine.begin() as conn:
            ensure_pg_functions(conn)
            self.schema.metadata.create_all(conn)
            for name, rows in _directory(self.schema).items():
                conn.execute(insert(self.schema.metadata.tables[name]), rows)
            directory = {uid: users.directory_entry(conn, uid) for uid, *_ in USERS}
        self.ctx = EvalContext(user_id=USER, now=NOW, ref=lambda entity, i: by_id.get(i), users=directory.get)
        with engine.begin() as conn:
            conn.execute(insert(self.schema.table("account")), [_db_row(self.schema, ACCOUNT, a)
                                                                for a in self.accounts])
            conn.execute(insert(self.schema.table("lead")), [_db_row(self.schema, LEAD, r) for r in self.leads])

    def check(self, text: str) -> None:
        try:
            compiled = compile_expression(text, LEAD, WS)
        except ExpressionTypeError as e:  # a random string compared with a picklist
            assert e.code == "expression_unknown_option", str(e)
            reject()
        table = self.schema.table("lead")
        clause = to_sql(compiled, self.schema, "lead", user_id=USER, now=NOW)
        with self.engine.connect() as conn:
            got = dict(conn.execute(select(table.c.id, clause).order_by(table.c.id)).all())
        for record in self.leads:
            py = compiled.evaluate(record, self.ctx)
            assert same(py, got[record["id"]]), (
                f"{text!r} on row {record['id']}: python={py!r} sql={got[record['id']]!r}\n{record}")


@pytest.fixture
def parity(db_url: str) -> Any:
    engine = make_engine(db_url)
    try:
        yield _Parity(engine)
    finally:
        engine.dispose()


def test_python_and_sql_agree(parity: _Parity) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(ANY_EXPR)
    def run(text: str) -> None:
        note(f"expression: {text}")
        parity.check(text)

    run()


@pytest.mark.parametrize("text", [
    "budget / 3", "budget % 7.5", "-score % 7", "rate * account.rating", "score / 0", "round(2.675, 2)",
    'lower("ÉÀ Ab")', 'icontains(name, "AB")', 'icontains(name, "%")', 'icontains(name, "b_")',
    'icontains("苏州精密机械", "精密")', 'icontains(name, lower(name))', 'icontains(name, null)',
    'name < "é"', "days_since(met_at)", "add_months(due, 1)", "seen_at < $now",
    "coalesce(seen_at, met_at)", 'not ("vip" in labels)', "isblank(labels)", "account.founded > due",
    "year(seen_at) * 100 + month(seen_at)", "max(met_at, seen_at)", 'stage not in ["won", null]',
    "(if active then score else null) + 1", "flag", "not flag", "flag != true",
    "add_days(met_at, -30)", "add_months(seen_at, 1)", "add_months(met_at, score)", "met_at == $today",
    "met_at >= add_days($today, -30)", "seen_at <= due", "last_contact != met_at", "add_days($now, 1) > due",
    "add_months(add_days(seen_at, 3), -13)", "max(add_days(met_at, 1), seen_at)",
    'owner.team == "east"', "owner.name", "rep.team", "concat(owner.username, rep.name)", "owner.team_id",
    "manager_of(owner)", "manager_of(manager_of(owner))", "manager_of(manager_of(manager_of(rep)))",
    "owner.active", "not owner.active", "manager_of(owner) == $user", "created_by.name", "updated_by.team",
])
def test_selected_expressions_agree(parity: _Parity, text: str) -> None:
    parity.check(text)
