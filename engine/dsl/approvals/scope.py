"""What an approval flow's expressions see, shared by the YAML shorthand and the BPMN reader.

A condition (trigger, step ``when:``, a BPMN gateway's flow) is boolean over the flow's entity *plus*
:data:`~engine.dsl.approvals.model.FLOW_VARIABLES` (``approved``, ``step``, ``approvals``,
``rejections``) and, for a BPMN file, the task-data variables its forms declare; an entity field of
the same name wins.  An assignee expression gives a user (``manager_of(owner)``, ``owner``) or a
username.  Roles are checked against the compiled roles with a did-you-mean hint; teams and users live
in the database and are checked by the runtime when a task is created.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Mapping

from engine.dsl.approvals.model import FLOW_VARIABLES
from engine.dsl.expressions import CompiledExpression, compile_expression
from engine.dsl.model import Entity, Field, Role, Workspace, frozen_map
from engine.errors import ConfigError, ExpressionError, ExpressionTypeError, SourceLocation, UnknownReference

Report = Callable[[ConfigError], None]
#: the expression-language types of the BPMN form field types (camunda:formField type)
FORM_TYPES: Mapping[str, str] = {"boolean": "boolean", "string": "string", "long": "integer", "enum": "string",
                                 "date": "datetime", "integer": "integer", "double": "decimal"}
#: Python or Java in a BPMN expression: dunder names, method calls, import/lambda/eval/exec
_LOOKS_LIKE_CODE = re.compile(r"__\w+|\.\s*\w+\s*\(|\b(?:import|lambda|eval|exec|getattr|open)\b")
CODE_HINT = ("BPMN conditions and assignees are written in the expression language (docs/expressions.md), never "
             "Python or JUEL method calls: nothing in a BPMN file is run as code")
#: what an assignee expression may give: a user (reference), a username or a user id
ASSIGNEE_KINDS = ("reference", "string", "number")


def with_variables(entity: Entity, variables: Mapping[str, str], location: SourceLocation) -> Entity:
    """``entity`` with one field per variable it does not already have (type -> field type)."""
    extra = {name: Field(name, typ, location, label=frozen_map({"en": name}))
             for name, typ in variables.items() if name not in entity.fields}
    return dataclasses.replace(entity, fields=frozen_map({**entity.fields, **extra})) if extra else entity


class FlowScope:
    """Compiles a flow's expressions and checks its names; every problem goes to ``report``."""

    def __init__(self, entity: Entity, entities: Mapping[str, Entity], roles: Mapping[str, Role],
                 functions: object, report: Report, location: SourceLocation) -> None:
        self.entity = entity
        self.entities = entities
        self.roles = roles
        self.functions = functions
        self.report = report
        self.location = location
        self.variables: dict[str, str] = dict(FLOW_VARIABLES)

    def add_variables(self, variables: Mapping[str, str]) -> None:
        """Task-data variables a BPMN file's forms declare (name -> expression-language type)."""
        for name, typ in variables.items():
            self.variables.setdefault(name, typ)

    def _seen(self, extra: Mapping[str, str] = frozen_map()) -> tuple[Entity, Workspace]:
        seen = with_variables(self.entity, {**self.variables, **extra}, self.location)
        ws = Workspace(name="", entities=frozen_map({**self.entities, seen.name: seen}),
                       functions=self.functions)  # type: ignore[arg-type]
        return seen, ws

    def condition(self, text: str, location: SourceLocation | None, *, quote_offset: int = 0,
                  where: SourceLocation | None = None, shown: str | None = None) -> CompiledExpression | None:
        """``text`` compiled as a boolean condition; ``where`` relocates errors (a BPMN element), ``shown``
        is the text as the file wrote it (JUEL) when ``text`` is its translation."""
        what = "condition" if shown is None or shown == text else f"condition {shown!r}, read as"
        return self._compile(text, location, "boolean", quote_offset, where, what)

    def value(self, text: str, location: SourceLocation | None, expected: str | None = None, *,
              quote_offset: int = 0) -> CompiledExpression | None:
        """``text`` compiled as a value over the record (a ``set:`` action's value)."""
        return self._compile(text, location, expected, quote_offset, None, "value")

    def literal(self, text: str) -> CompiledExpression:
        """A string literal expression giving ``text`` (a timer's ISO 8601 text for the runtime)."""
        seen, ws = self._seen()
        return compile_expression("'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'", seen, ws,
                                  expected="string")

    def assignee(self, text: str, location: SourceLocation | None, *, quote_offset: int = 0,
                 where: SourceLocation | None = None,
                 variables: Mapping[str, str] = frozen_map()) -> CompiledExpression | None:
        """``text`` compiled as an assignee expression: it must give a user, a username or a user id."""
        compiled = self._compile(text, location, None, quote_offset, where, "assignee", variables)
        kind = compiled.expr_type if compiled is not None else None
        if compiled is not None and kind is not None and (kind.kind not in ASSIGNEE_KINDS or
                                                          (kind.kind == "number" and not kind.integral)):
            self.report(ExpressionTypeError(
                f"assignee {text!r} gives a {compiled.expr_type}, not a user",
                location=where or location,
                hint="give a user: manager_of(owner), owner, or a username text"))
            return None
        return compiled

    def _compile(self, text: str, location: SourceLocation | None, expected: str | None, quote_offset: int,
                 where: SourceLocation | None, what: str,
                 variables: Mapping[str, str] = frozen_map()) -> CompiledExpression | None:
        seen, ws = self._seen(variables)
        try:
            return compile_expression(text, seen, ws, expected=expected, location=None if where else location,
                                      quote_offset=quote_offset)
        except ExpressionError as e:
            if where is None:
                self.report(e)
            elif _LOOKS_LIKE_CODE.search(text):
                self.report(type(e)(f"{what} {text!r} is not in the expression language ({e.message})",
                                    location=where, hint=CODE_HINT))
            else:
                self.report(type(e)(f"{what} {text!r}: {e.message}", location=where, hint=e.hint))
            return None

    def check_role(self, role: str, location: SourceLocation | None, context: str) -> bool:
        """Report an unknown role (with the closest known one); True when the role exists."""
        if role in self.roles:
            return True
        self.unknown(f"{context} names unknown role {role!r} (roles: {', '.join(self.roles) or 'none'})",
                     location, role, self.roles)
        return False

    def check_fields(self, names: Iterable[str], locate_at: Callable[[int], SourceLocation | None],
                     context: str) -> tuple[str, ...]:
        """The names that are fields of the entity; each other one reported as unknown."""
        out = []
        for i, name in enumerate(names):
            if name in self.entity.fields:
                out.append(name)
            else:
                self.unknown(f"{context}: entity {self.entity.name!r} has no field {name!r}", locate_at(i), name,
                             self.entity.fields)
        return tuple(out)

    def unknown(self, message: str, location: SourceLocation | None, name: str, choices: Iterable[str]) -> None:
        close = difflib.get_close_matches(str(name), list(choices), n=1)
        self.report(UnknownReference(message, location=location,
                                     hint=f"did you mean {close[0]!r}?" if close else None))
