"""Money of two currencies may not meet without convert(): a compile-time error located in the YAML file.

The workspace is compiled with the engine's plugin host, as ``crm validate`` does, so ``convert()``
(registered by the multi-currency feature plugin) is known.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.dsl.expressions import compile_expression
from engine.dsl.model import Workspace
from engine.errors import ConfigError, ConfigErrors, ExpressionTypeError
from engine.plugins.host import compile_folder

ENTITY = """
entity: deal
fields:
  name: {type: string}
  amount: {type: money}
  budget: {type: money}
  score: {type: integer}
  close_date: {type: date}
  total:
    type: money
    formula: "{formula}"
"""


def _compile(tmp_path: Path, formula: str) -> Workspace:
    (tmp_path / "workspace.yaml").write_text("workspace: acme\ncurrency: CNY\n", encoding="utf-8")
    (tmp_path / "entities").mkdir(exist_ok=True)
    text = textwrap.dedent(ENTITY).lstrip().replace("{formula}", formula)
    (tmp_path / "entities" / "deal.yaml").write_text(text, encoding="utf-8")
    return compile_folder(tmp_path)[0]


def _error(tmp_path: Path, formula: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        _compile(tmp_path, formula)
    err = e.value
    if isinstance(err, ConfigErrors):
        assert len(err.errors) == 1, err
        err = err.errors[0]
    return err


def test_a_sum_of_two_money_fields_without_convert_is_a_located_type_error(tmp_path: Path) -> None:
    err = _error(tmp_path, "coalesce(amount, 0) + budget")
    assert err.code == "expression_mixed_currency"
    assert err.location is not None
    assert (Path(err.location.file).name, err.location.line, err.location.col) == ("deal.yaml", 10, 15)
    assert "mixes money in different currencies (amount's currency and budget's currency)" in err.message
    assert err.hint is not None and "convert(amount, 'CNY') + convert(budget, 'CNY')" in err.hint
    assert "deal.yaml:10:15" in str(err)


@pytest.mark.parametrize("formula", ["amount - budget", "if score > 1 then amount else budget",
                                     "max(amount, budget)", "round(amount, 2) + budget * 2",
                                     "convert(amount, 'USD') + convert(budget, 'CNY')"])
def test_every_way_of_mixing_currencies_is_refused(tmp_path: Path, formula: str) -> None:
    assert _error(tmp_path, formula).code == "expression_mixed_currency"


@pytest.mark.parametrize("formula", ["convert(amount, 'CNY') + convert(budget, 'CNY')",
                                     "amount * 2 + amount", "amount + 100", "coalesce(amount, 0) * score",
                                     "convert(amount + amount, 'CNY', close_date) - convert(budget, 'CNY')"])
def test_one_currency_compiles(tmp_path: Path, formula: str) -> None:
    _compile(tmp_path, formula)


def test_comparing_money_of_two_currencies_is_refused_too(tmp_path: Path) -> None:
    ws = _compile(tmp_path, "amount")
    with pytest.raises(ExpressionTypeError) as e:
        compile_expression("amount > budget", ws.entities["deal"], ws, expected="boolean")
    assert e.value.code == "expression_mixed_currency"
    compile_expression("convert(amount, 'CNY') > convert(budget, 'CNY')", ws.entities["deal"], ws,
                       expected="boolean")


@pytest.mark.parametrize(("formula", "code", "message"), [
    ("convert(amount, 'XYZ')", "invalid_currency", "'XYZ' is not an ISO 4217 currency code"),
    ("convert(amount, 'usd')", "invalid_currency", "write the currency code in capitals: 'USD'"),
    ("convert(score, 'CNY')", "expression_not_money", "must be a money value"),
    ("convert(amount, name)", "expression_bad_arguments", "must be a currency code in quotes"),
])
def test_bad_convert_calls_are_located_errors(tmp_path: Path, formula: str, code: str, message: str) -> None:
    err = _error(tmp_path, formula)
    assert (err.code, err.location is not None and err.location.line) == (code, 10)
    assert message in err.message


def test_the_workspace_currency_must_be_an_iso_4217_code(tmp_path: Path) -> None:
    _compile(tmp_path, "amount")
    (tmp_path / "workspace.yaml").write_text("workspace: acme\ncurrency: RMB\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        compile_folder(tmp_path)
    err = e.value
    assert err.code == "schema_violation" and "currency 'RMB' is not an ISO 4217 currency code" in err.message
    assert err.location is not None and (Path(err.location.file).name, err.location.line) == ("workspace.yaml", 2)
    assert err.hint is not None and "the Chinese yuan is CNY" in err.hint
