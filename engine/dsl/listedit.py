"""The edit form of a keyed list in an ``extend`` layer (picklist ``options``).

An extend layer may restate a list whole (it replaces the earlier one) or
*edit* it with a mapping::

    options:
      remove: [lost]                      # rows holding it: say where they go with the field's replace:
      update: {proposal: {label: Quote}}  # change an option's label / color in place
      add: [{key: on_hold, label: On hold}]
      after: negotiation                  # or before: <key>; without either, added options go last

The edits apply in that order (remove, update, add), to the list as the
earlier layers left it.  Mistakes are located errors in the editing layer
that name the earlier definition: adding a key that exists, placing
``after:`` / ``before:`` a key that does not, removing or updating an unknown
key (with did-you-mean).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from engine.dsl.yamlsrc import YList, YMap, located_copy
from engine.errors import ConfigError, DuplicateDefinition, LayerError, SourceLocation, UnknownReference

#: the keys of the edit form, in the order they apply
EDIT_KEYS = ("remove", "update", "add", "after", "before")
#: the error code of a misused edit form (docs/errors.md)
LIST_EDIT = "list_edit"

Report = Callable[[ConfigError], None]


def is_list_edit(value: Any) -> bool:
    """Whether ``value`` is the edit form (a mapping) rather than a list."""
    return isinstance(value, YMap)


def item_key(item: Any, key: str) -> str | None:
    """The identity of a list item: a plain item is its own key, a mapping has it under ``key``."""
    if isinstance(item, dict):
        value = item.get(key)
        return None if value is None else str(value)
    return None if item is None else str(item)


def edit_list(target: YList, edit: YMap, key: str, where: str, report: Report) -> None:
    """Apply ``edit`` to ``target`` in place (see the module docstring); problems go to ``report``.

    ``where`` names the list in messages (``fields.stage.options``).
    """
    first = target.written_at()[0]
    removes = edit.get("remove") or YList()
    updates = edit.get("update") or YMap()
    for item, loc in zip(removes, removes.item_locs, strict=False):
        _remove(target, str(item), loc, key, where, first, report, updating=str(item) in updates)
    for name in updates:
        _update(target, str(name), updates[name], updates.key_locs[name], key, where, first, report)
    if _placement_ok(edit, where, report) and "add" in edit:
        _add(target, edit, key, where, report)
    target.history = [*target.written_at(), edit.loc]


def _keys(target: YList, key: str) -> list[str]:
    return [k for k in (item_key(t, key) for t in target) if k is not None]


def _position(target: YList, name: str, key: str) -> int | None:
    return next((i for i, t in enumerate(target) if item_key(t, key) == name), None)


def _unknown(name: str, known: Iterable[str], loc: SourceLocation, message: str, first: SourceLocation,
             report: Report) -> None:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    report(UnknownReference(f"{message} (the list is defined at {first})", location=loc,
                            hint=hint + f"the keys are: {', '.join(known)}"))


def _remove(target: YList, name: str, loc: SourceLocation, key: str, where: str, first: SourceLocation,
            report: Report, *, updating: bool) -> None:
    pos = _position(target, name, key)
    if pos is None:
        _unknown(name, _keys(target, key), loc, f"{where}: cannot remove {name!r}, there is no such key", first,
                 report)
    elif updating:
        report(LayerError(f"{where}: {name!r} is both removed and updated", code=LIST_EDIT, location=loc,
                          hint="keep one of the two"))
    else:
        del target[pos]
        del target.item_locs[pos]


def _update(target: YList, name: str, change: Any, loc: SourceLocation, key: str, where: str,
            first: SourceLocation, report: Report) -> None:
    pos = _position(target, name, key)
    if pos is None:
        _unknown(name, _keys(target, key), loc, f"{where}: cannot update {name!r}, there is no such key", first,
                 report)
        return
    item = target[pos]
    if not isinstance(item, YMap):  # a plain key becomes {key: ...} to carry the new properties
        item = YMap(loc=target.item_locs[pos])
        item.set_located(key, name, target.item_locs[pos], target.item_locs[pos])
        target[pos] = item
    for prop, value in change.items():
        old = item.get(prop)
        if isinstance(old, YMap) and isinstance(value, YMap):  # label: {zh: ...} keeps the other languages
            for sub, sub_value in value.items():
                old.set_located(sub, sub_value, value.key_locs[sub], value.val_locs[sub])
        else:
            item.set_located(prop, located_copy(value), change.key_locs[prop], change.val_locs[prop])


def _placement_ok(edit: YMap, where: str, report: Report) -> bool:
    if "after" in edit and "before" in edit:
        report(LayerError(f"{where}: both 'after:' and 'before:' are given", code=LIST_EDIT,
                          location=edit.key_locs["before"], hint="keep one: added items go after or before a key"))
        return False
    anchor = "after" if "after" in edit else "before" if "before" in edit else None
    if anchor is not None and "add" not in edit:
        report(LayerError(f"{where}: '{anchor}:' places added items, but nothing is added", code=LIST_EDIT,
                          location=edit.key_locs[anchor], hint=f"add 'add: [...]', or remove '{anchor}:'"))
        return False
    return True


def _add(target: YList, edit: YMap, key: str, where: str, report: Report) -> None:
    index = len(target)
    for anchor, shift in (("after", 1), ("before", 0)):
        if anchor in edit:
            name = str(edit[anchor])
            pos = _position(target, name, key)
            if pos is None:
                _unknown(name, _keys(target, key), edit.val_locs[anchor],
                         f"{where}: '{anchor}: {name}' names no key", target.written_at()[0], report)
            else:
                index = pos + shift
    added: YList = edit["add"]
    for item, loc in zip(added, added.item_locs, strict=False):
        new_key = item_key(item, key)
        pos = _position(target, new_key, key) if new_key is not None else None
        if pos is not None:
            report(DuplicateDefinition(
                f"{where}: {new_key!r} is already in the list (at {target.item_locs[pos]})", location=loc,
                hint=f"change it with 'update: {{{new_key}: {{label: ...}}}}', or add another key"))
            continue
        target.insert(index, located_copy(item))
        target.item_locs.insert(index, loc)
        index += 1
