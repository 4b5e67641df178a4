"""An example crm-engine plugin, installable on its own (``pip install -e plugins/crm-chinese-id``).

* field type ``chinese_id``: a PRC resident identity number (GB 11643-1999:
  17 digits and a check character, 0-9 or X), stored as 18 characters of
  text; the check character is verified and ``x`` is written as ``X``;
* function ``mask_phone(text)``: ``13812345678`` -> ``138****5678`` (first
  three and last four characters kept), in Python and in SQL, so it works in
  formulas and in list filters alike.

A workspace enables it with ``plugins: [chinese_id]`` in ``workspace.yaml``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.dsl.expressions import FunctionDef
from engine.dsl.extensions import FieldTypeDef
from engine.plugins import hookimpl

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    """The check character of the first 17 digits (ISO 7064 MOD 11-2)."""
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def check_chinese_id(value: str) -> str:
    """``value`` normalised (``X`` upper-case), or ValueError saying what is wrong."""
    text = value.strip().upper()
    if len(text) != 18 or not text[:17].isascii() or not text[:17].isdigit() or text[17] not in "0123456789X":
        raise ValueError("is not an identity number (17 digits and a check digit or X)")
    try:
        dt.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        raise ValueError("has a birth date that does not exist") from None
    if check_digit(text[:17]) != text[17]:
        raise ValueError("has a wrong check digit")
    return text


def mask_phone(text: str | None) -> str | None:
    """The first three and last four characters of ``text``, the rest as ``****``; short text unchanged."""
    if text is None or len(text) <= 7:
        return text
    return text[:3] + "****" + text[-4:]


def _mask_sql(ctx: Any, args: list[Any]) -> Any:
    from sqlalchemy import String, case, func, literal, type_coerce

    x = args[0]
    head = type_coerce(func.substr(x, 1, 3), String())
    tail = type_coerce(func.substr(x, func.length(x) - 3), String())
    return case((func.length(x) <= 7, x), else_=head + literal("****") + tail)  # String + String: ||


@hookimpl
def crm_field_types() -> list[FieldTypeDef]:
    return [FieldTypeDef("chinese_id", "string", check_chinese_id, max_length=18,
                         description="PRC resident identity number (18 characters, check digit verified)")]


@hookimpl
def crm_expression_functions() -> list[FunctionDef]:
    return [FunctionDef("mask_phone", ("string",), "string", mask_phone, sql={"*": _mask_sql})]
