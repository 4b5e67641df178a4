"""Demo users, teams and records for ``crm demo`` (manufacturing workspace).

Deterministic for a seed: the same seed gives the same users and records.
Everything goes through the users module and the record service (so
validation, formulas, audit and ownership apply exactly as for real data).
Idempotent: if the demo users already own records, nothing is added.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.errors import NotFound
from engine.runtime.context import Actor

ADMIN = "admin"
MANAGER = "wang.manager"
REPS = ("li.sales", "zhang.sales", "chen.sales", "emma.sales")
TEAM = "east_sales"
#: approvers of the shipped approval flows (quote_discount, contract_risk): user -> role, when the role exists
APPROVERS = (("zhao.director", "sales_director", "赵总监"), ("qian.finance", "finance", "钱财务"),
             ("sun.legal", "legal", "孙法务"))

CN_COMPANIES = (
    "苏州精工机械有限公司", "宁波恒达模具厂", "无锡华泰电子科技", "常州联合纺织集团", "杭州钱江汽车零部件",
    "上海浦江化工有限公司", "青岛海泰金属制品", "佛山顺德五金工业", "东莞新科电子制造", "天津滨海重工",
    "武汉光谷精密仪器", "成都天府食品加工", "重庆长江机电设备", "合肥科达自动化", "厦门鹭岛包装材料",
    "温州瓯江阀门制造", "南通江海纺机", "嘉兴秀洲塑胶", "绍兴柯桥印染", "台州黄岩注塑模具",
)
EN_COMPANIES = (
    "Acme Precision Tools", "Northwind Castings", "Bluewater Robotics", "Summit Plastics", "Granite Machining",
    "Redwood Electronics", "Ironbridge Fabrication", "Cobalt Automation", "Meridian Textiles", "Harbor Chemicals",
    "Pioneer Foods", "Vertex Metals", "Lakeside Packaging", "Orion Motor Parts", "Keystone Valves",
)
CN_NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴婷", "徐涛", "孙丽")
EN_NAMES = ("John Carter", "Mary Lee", "David Kim", "Sarah Jones", "Tom Becker", "Anna Novak")
CITIES = (("江苏", "苏州", "east"), ("浙江", "宁波", "east"), ("广东", "佛山", "south"), ("北京", "北京", "north"),
          ("四川", "成都", "west"), ("上海", "上海", "east"), ("天津", "天津", "north"), ("湖北", "武汉", "west"))


@dataclass
class DemoResult:
    """What :func:`populate` made (or found)."""

    admin_user_id: int
    created: dict[str, int] = field(default_factory=dict)
    reused: bool = False


def populate(runtime: Any, *, seed: int = 2026, scale: int = 1) -> DemoResult:
    """Create the demo users, team and a few hundred records (``scale`` multiplies the counts)."""
    with runtime.unit(Actor.system()) as uow:
        admin_id = _ensure_users(uow)
    if _has_records(runtime):
        return DemoResult(admin_user_id=admin_id, reused=True)
    rng = random.Random(seed)
    made: dict[str, int] = {}
    for name in REPS:
        with runtime.unit(_actor(runtime, name)) as uow:
            _populate_rep(uow, rng, scale, made)
    with runtime.unit(Actor.system()) as uow:
        _fill_pools(uow, rng, scale, made)
    return DemoResult(admin_user_id=admin_id, created=made)


def _ensure_users(uow: Any) -> int:
    """The admin, a sales manager heading the team, and the reps; returns the admin's id."""
    from engine.runtime import users

    try:
        admin_id = users.user_id(uow.conn, ADMIN)
    except NotFound:
        admin_id = users.create_user(uow, ADMIN, roles=["admin"], display_name="Administrator")
        users.create_user(uow, MANAGER, roles=["sales_manager"], display_name="王经理")
        users.create_team(uow, TEAM, manager=MANAGER)
        for name in REPS:
            users.create_user(uow, name, roles=["sales"], team=TEAM, manager=MANAGER, display_name=name)
    _ensure_approvers(uow)
    return admin_id


def _ensure_approvers(uow: Any) -> None:
    """A user for each approver role of the shipped flows (also added to a demo made before they were); the
    director manages the sales manager, so ``manager_of(manager_of(owner))`` is the director."""
    from engine.runtime import users
    from engine.runtime.people import admin

    for name, role, display in APPROVERS:
        if role not in uow.workspace.roles:
            continue
        try:
            users.user_id(uow.conn, name)
        except NotFound:
            users.create_user(uow, name, roles=[role], display_name=display)
            if role == "sales_director":
                admin.update_user(uow, MANAGER, manager=name)


def _actor(runtime: Any, username: str) -> Actor:
    from engine.runtime import users

    with runtime.engine.connect() as conn:
        return users.actor_for(conn, runtime.state.workspace, username)


def _has_records(runtime: Any) -> bool:
    with runtime.unit(Actor.system(), readonly=True) as uow:
        page = uow.records.list("account", limit=1)
    return bool(page.items)


def _populate_rep(uow: Any, rng: random.Random, scale: int, made: dict[str, int]) -> None:
    """One rep's book: accounts with contacts, deals, quotes, tickets; leads; activities."""
    svc = uow.records
    for _ in range(5 * scale):
        account = _create(svc, "account", _account_values(rng), made)
        contacts = [_create(svc, "contact", _contact_values(rng, account), made) for _ in range(2)]
        opp = _create(svc, "opportunity", _opportunity_values(rng, account, contacts[0]), made)
        _create(svc, "quote", _quote_values(rng, account, opp, contacts[0]), made)
        _create(svc, "ticket", _ticket_values(rng, account, contacts[1]), made)
        for target in (("account", account), ("opportunity", opp), ("contact", contacts[0])):
            _create(svc, "activity", _activity_values(rng, *target), made)
    for _ in range(20 * scale):
        lead = _create(svc, "lead", _lead_values(rng), made)
        if rng.random() < 0.5:
            _create(svc, "activity", _activity_values(rng, "lead", lead), made)


def _fill_pools(uow: Any, rng: random.Random, scale: int, made: dict[str, int]) -> None:
    """Leads from a purchased list, waiting unclaimed in the lead pools (east ones in ``east_pool``, the
    others in ``general_pool``) for the reps to claim; nothing when the workspace has no such pools."""
    pools = {name for name, obj in uow.workspace.objects_of("pool").items() if obj.data.get("entity") == "lead"}
    if not pools:
        return
    for _ in range(12 * scale):
        values = {**_lead_values(rng), "source": "purchased_list"}
        pool = "east_pool" if values.get("region") == "east" and "east_pool" in pools else "general_pool"
        if pool not in pools:
            pool = sorted(pools)[0]
        uow.records.create("lead", {**values, "pool": pool}, bypass_readonly=True)
        made["lead"] = made.get("lead", 0) + 1


def _create(svc: Any, entity: str, values: dict[str, Any], made: dict[str, int]) -> int:
    record = svc.create(entity, values)
    made[entity] = made.get(entity, 0) + 1
    return int(record["id"])


def company_name(rng: random.Random) -> str:
    """A Chinese or English manufacturing company name (two in three are Chinese)."""
    if rng.random() < 0.67:
        return rng.choice(CN_COMPANIES)
    return rng.choice(EN_COMPANIES)


def _person(rng: random.Random) -> str:
    return rng.choice(CN_NAMES) if rng.random() < 0.7 else rng.choice(EN_NAMES)


#: mobile prefixes of China that are in service (a phone field refuses an unassigned one such as 154)
_MOBILE_PREFIXES = ("130", "133", "135", "136", "138", "139", "150", "158", "186", "188", "199")


def _phone(rng: random.Random) -> str:
    """A Chinese mobile number with its country code (valid whatever the workspace's phone_region)."""
    return f"+86 {rng.choice(_MOBILE_PREFIXES)} {rng.randrange(10**7, 10**8)}"


def _lead_values(rng: random.Random) -> dict[str, Any]:
    province, city, region = rng.choice(CITIES)
    values: dict[str, Any] = {
        "company": company_name(rng), "contact_name": _person(rng), "phone": _phone(rng),
        "industry": rng.choice(("manufacturing", "manufacturing", "services", "it", "other")),
        "demand": rng.choice(("clear", "vague", "none")), "region": region, "province": province, "city": city,
        "source": rng.choice(("website", "exhibition", "referral", "ads", "purchased_list")),
        "budget": Decimal(rng.randrange(5, 300) * 10_000),
        "status": rng.choice(("new", "new", "working", "qualified")),
    }
    if rng.random() < 0.6:
        values["email"] = f"contact{rng.randrange(1000, 9999)}@example.com"
    return values


def _account_values(rng: random.Random) -> dict[str, Any]:
    province, city, region = rng.choice(CITIES)
    return {
        "name": f"{company_name(rng)} {rng.randrange(1, 99):02d}", "industry": "manufacturing",
        "type": rng.choice(("prospect", "customer", "customer")), "region": region, "province": province,
        "city": city, "phone": _phone(rng), "annual_revenue": Decimal(rng.randrange(1, 500) * 1_000_000),
        "employee_count": rng.randrange(20, 5000), "factory_size": rng.choice(("small", "medium", "large")),
    }


def _contact_values(rng: random.Random, account: int) -> dict[str, Any]:
    return {"name": _person(rng), "account": account, "mobile": _phone(rng),
            "title": rng.choice(("采购经理", "厂长", "CTO", "Plant manager", "设备主管")),
            "is_decision_maker": rng.random() < 0.3}


def _opportunity_values(rng: random.Random, account: int, contact: int) -> dict[str, Any]:
    close = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(0, 270))
    name = f"设备采购 {rng.randrange(100, 999)}"
    step = rng.randrange(10, 500)
    amount = Decimal(step * 10_000)
    return {"name": name, "account": account, "primary_contact": contact,
            "amount": amount, "close_date": close,
            "stage": rng.choice(("qualification", "needs_analysis", "proposal", "negotiation")),
            "source": rng.choice(("website", "exhibition", "referral")),
            "project_type": rng.choice(("new_line", "expansion", "replacement", "upgrade")),
            # what the pipeline's stages require (derived, so the random sequence stays as it was)
            "budget_range": "100k_1m" if amount < 1_000_000 else "over_1m",
            "decision_maker": ("设备部经理", "厂长", "采购总监")[step % 3],
            "customer_feedback": ("comparing_competitors", "price_too_high", "budget_short", "no_objection")[step % 4]}


def _quote_values(rng: random.Random, account: int, opp: int, contact: int) -> dict[str, Any]:
    day = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(0, 120))
    return {"account": account, "opportunity": opp, "contact": contact, "quote_date": day,
            "valid_until": day + dt.timedelta(days=30), "discount_rate": Decimal(rng.choice((0, 5, 10, 15))) / 100}


def _ticket_values(rng: random.Random, account: int, contact: int) -> dict[str, Any]:
    return {"subject": rng.choice(("设备异响", "Spindle overheating", "需要上门保养", "PLC alarm E203", "配件询价")),
            "account": account, "contact": contact, "category": rng.choice(("fault", "question", "request")),
            "priority": rng.choice(("low", "normal", "high")), "channel": rng.choice(("phone", "email", "web"))}


def _activity_values(rng: random.Random, target: str, target_id: int) -> dict[str, Any]:
    at = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC) + dt.timedelta(hours=rng.randrange(0, 2000))
    return {"type": rng.choice(("call", "visit", "email", "meeting")), target: target_id, "occurred_at": at,
            "subject": rng.choice(("电话沟通需求", "现场拜访", "Sent brochure", "技术交流会", "Follow-up call")),
            "outcome": rng.choice(("positive", "neutral", "negative", "no_answer")),
            "duration_minutes": rng.randrange(5, 120)}
