"""A small XML element tree that knows where each start tag was written (file:line:col).

:mod:`xml.etree` drops positions; expat reports them per start tag (``CurrentLineNumber``,
``CurrentColumnNumber``), so the BPMN reader builds its own tree with them to locate every error at
the element it is about.  Names are ``(namespace URI, local name)``; attributes likewise.  Pure
standard library: no external entity is resolved and no DTD is read (expat's defaults).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.parsers import expat

from engine.errors import BpmnSyntaxError, SourceLocation

QName = tuple[str, str]


@dataclass(eq=False)
class Element:
    """One element: name, attributes, text (stripped), children, position of its start tag."""

    ns: str
    tag: str
    attrs: dict[QName, str]
    location: SourceLocation
    children: list[Element] = field(default_factory=list)
    parent: Element | None = None
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts).strip()

    def get(self, name: str, ns: str = "") -> str | None:
        """The attribute ``name`` (no namespace unless ``ns``)."""
        return self.attrs.get((ns, name))

    def iter(self) -> Iterator[Element]:
        """This element and every descendant, in document order."""
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, ns: str, tag: str) -> list[Element]:
        """The direct children named ``{ns}tag``."""
        return [c for c in self.children if c.ns == ns and c.tag == tag]

    def describe(self) -> str:
        """``userTask 'approve'`` for messages."""
        ident = self.get("id")
        return f"{self.tag} {ident!r}" if ident else self.tag


def _split(name: str) -> QName:
    ns, _, local = name.rpartition(" ")
    return ns, local


def parse(text: str, file: str) -> Element:
    """The root element of ``text``; raises :class:`BpmnSyntaxError` located in ``file``."""
    parser = expat.ParserCreate(namespace_separator=" ")
    stack: list[Element] = []
    root: list[Element] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        ns, tag = _split(name)
        loc = SourceLocation(file, parser.CurrentLineNumber, parser.CurrentColumnNumber + 1)
        el = Element(ns, tag, {_split(k): v for k, v in attrs.items()}, loc, parent=stack[-1] if stack else None)
        if stack:
            stack[-1].children.append(el)
        else:
            root.append(el)
        stack.append(el)

    def end(name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text_parts.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(text.encode("utf-8"), True)
    except expat.ExpatError as e:
        raise BpmnSyntaxError(f"not well-formed XML: {expat.ErrorString(e.code)}",
                              location=SourceLocation(file, e.lineno, e.offset + 1),
                              hint="save the diagram again from the modeler, or fix the XML at this place") from None
    if not root:
        raise BpmnSyntaxError("the file holds no XML element", location=SourceLocation(file, 1, 1))
    return root[0]
