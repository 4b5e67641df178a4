"""An approval flow's diagram as SVG, drawn from the BPMN file's diagram interchange (``bpmndi``), with the
steps of one instance marked: waiting now, approved, rejected.

Server-side and self-contained (an inline ``<style>``, no script, no external reference), so a client
embeds it as it is.  Shapes follow BPMN's notation closely enough to read a flow at a glance: events as
circles (an end event thick, intermediate and boundary events double), gateways as diamonds with their
marker (X exclusive, + parallel, O inclusive), activities as rounded boxes with their name, pools and
lanes as bands with a vertical label, sequence flows as arrows (message flows dashed, associations
dotted) with their name.  Every text from the file is escaped.  Elements without a shape in the diagram
are not drawn; a file without any diagram gives a small SVG saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from engine.dsl.approvals.xmltree import Element, parse

MODEL = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"

EVENTS = frozenset({"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"})
GATEWAYS = {"exclusiveGateway": "x", "parallelGateway": "+", "inclusiveGateway": "o", "eventBasedGateway": "o",
            "complexGateway": "*"}
POOLS = frozenset({"participant", "lane"})
#: instance state of a step -> CSS class
STATES = ("current", "done", "rejected")
PAD = 20.0

STYLE = """
.shape{fill:#fff;stroke:#22242a;stroke-width:1.5}
.pool{fill:none;stroke:#22242a;stroke-width:1.2}
.edge{fill:none;stroke:#22242a;stroke-width:1.5}
.message{stroke-dasharray:6 4}.association{stroke-dasharray:2 3}
.end{stroke-width:4}
.label{font:12px sans-serif;fill:#22242a;text-anchor:middle;dominant-baseline:middle}
.current{fill:#fff4e6;stroke:#e8590c;stroke-width:3}
.done{fill:#ebfbee;stroke:#2b8a3e;stroke-width:2.5}
.rejected{fill:#fff5f5;stroke:#c92a2a;stroke-width:2.5}
.marker{stroke:#22242a;stroke-width:2.5;fill:none}
"""


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    w: float
    h: float


def render(bpmn_xml: str, process_id: str, states: Mapping[str, str] | None = None, *,
           title: str | None = None) -> str:
    """The SVG of ``process_id``'s diagram in ``bpmn_xml``; ``states``: element id -> current/done/rejected."""
    root = parse(bpmn_xml, "<flow>")
    by_id = {e.get("id"): e for e in root.iter() if e.get("id")}
    plane = _plane(root, process_id, by_id)
    if plane is None:
        return _empty(title)
    states = states or {}
    shapes: list[str] = []
    pools: list[str] = []
    edges: list[str] = []
    bounds: list[Box] = []
    for el in plane.iter():
        if el.ns != BPMNDI:
            continue
        target = by_id.get(el.get("bpmnElement") or "")
        if el.tag == "BPMNShape" and target is not None:
            box = _bounds(el)
            if box is None:
                continue
            bounds.append(box)
            css = states.get(target.get("id") or "")
            (pools if target.tag in POOLS else shapes).append(_shape(target, box, el, css))
        elif el.tag == "BPMNEdge" and target is not None:
            points = [(_num(p.get("x")), _num(p.get("y"))) for p in el.children if p.ns == DI and p.tag == "waypoint"]
            if len(points) >= 2:
                bounds.extend(Box(x, y, 0, 0) for x, y in points)
                edges.append(_edge(target, points, el))
    if not bounds:
        return _empty(title)
    x0, y0 = min(b.x for b in bounds) - PAD, min(b.y for b in bounds) - PAD
    x1, y1 = max(b.x + b.w for b in bounds) + PAD, max(b.y + b.h for b in bounds) + PAD
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{x0:g} {y0:g} {x1 - x0:g} {y1 - y0:g}" '
            f'width="{x1 - x0:g}" height="{y1 - y0:g}" role="img">')
    parts = [head, f"<title>{escape(title or process_id)}</title>",
             f"<style>{STYLE.strip()}</style>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#22242a"/></marker></defs>',
             *pools, *edges, *shapes, "</svg>"]
    return "\n".join(parts) + "\n"


def _plane(root: Element, process_id: str, by_id: Mapping[str | None, Element]) -> Element | None:
    """The diagram plane that shows the process (directly, or through the collaboration holding it)."""
    planes = [e for e in root.iter() if e.ns == BPMNDI and e.tag == "BPMNPlane"]
    for plane in planes:
        shown = by_id.get(plane.get("bpmnElement") or "")
        if shown is None:
            continue
        if shown.get("id") == process_id:
            return plane
        if shown.tag == "collaboration" and any(p.get("processRef") == process_id for p in shown.children):
            return plane
    return planes[0] if planes else None


def _bounds(el: Element) -> Box | None:
    for c in el.children:
        if c.ns == DC and c.tag == "Bounds":
            return Box(_num(c.get("x")), _num(c.get("y")), _num(c.get("width")), _num(c.get("height")))
    return None


def _label_box(di: Element) -> Box | None:
    for c in di.children:
        if c.ns == BPMNDI and c.tag == "BPMNLabel":
            return _bounds(c)
    return None


def _num(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def _shape(el: Element, b: Box, di: Element, state: str | None) -> str:
    css = f"shape {state}" if state in STATES else "shape"
    name = el.get("name") or ""
    ident = quoteattr(el.get("id") or "")
    if el.tag in POOLS:
        cx, cy = b.x + 15, b.y + b.h / 2
        label = f'<text class="label" transform="rotate(-90 {cx:g} {cy:g})" x="{cx:g}" y="{cy:g}">{escape(name)}</text>'
        return f'<g data-element={ident}><rect class="pool" x="{b.x:g}" y="{b.y:g}" width="{b.w:g}" ' \
               f'height="{b.h:g}"/>{label if name else ""}</g>'
    if el.tag in EVENTS:
        r = min(b.w, b.h) / 2
        cx, cy = b.x + b.w / 2, b.y + b.h / 2
        extra = " end" if el.tag == "endEvent" else ""
        inner = f'<circle class="shape" cx="{cx:g}" cy="{cy:g}" r="{r - 3:g}"/>' \
            if el.tag in ("intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent") else ""
        return f'<g data-element={ident}><circle class="{css}{extra}" cx="{cx:g}" cy="{cy:g}" r="{r:g}"/>{inner}' \
               f'{_outside_label(name, b, di)}</g>'
    if el.tag in GATEWAYS:
        cx, cy = b.x + b.w / 2, b.y + b.h / 2
        diamond = f"{cx:g},{b.y:g} {b.x + b.w:g},{cy:g} {cx:g},{b.y + b.h:g} {b.x:g},{cy:g}"
        return f'<g data-element={ident}><polygon class="{css}" points="{diamond}"/>' \
               f'{_marker(GATEWAYS[el.tag], cx, cy, min(b.w, b.h) / 4)}{_outside_label(name, b, di)}</g>'
    rx = 10 if el.tag not in ("dataObjectReference", "dataStoreReference", "textAnnotation") else 0
    return f'<g data-element={ident}><rect class="{css}" x="{b.x:g}" y="{b.y:g}" width="{b.w:g}" ' \
           f'height="{b.h:g}" rx="{rx}"/>{_inside_label(name, b)}</g>'


def _marker(kind: str, cx: float, cy: float, s: float) -> str:
    if kind == "x":
        return (f'<path class="marker" d="M{cx - s * .7:g},{cy - s * .7:g} L{cx + s * .7:g},{cy + s * .7:g} '
                f'M{cx + s * .7:g},{cy - s * .7:g} L{cx - s * .7:g},{cy + s * .7:g}"/>')
    if kind == "+":
        return f'<path class="marker" d="M{cx:g},{cy - s:g} L{cx:g},{cy + s:g} M{cx - s:g},{cy:g} L{cx + s:g},{cy:g}"/>'
    if kind == "o":
        return f'<circle class="marker" cx="{cx:g}" cy="{cy:g}" r="{s * .8:g}"/>'
    return ""


def _inside_label(name: str, b: Box) -> str:
    if not name:
        return ""
    lines = _wrap(name, max(4, int(b.w / 7)))[:4]
    top = b.y + b.h / 2 - (len(lines) - 1) * 7
    spans = "".join(f'<tspan x="{b.x + b.w / 2:g}" y="{top + i * 14:g}">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f'<text class="label">{spans}</text>'


def _outside_label(name: str, b: Box, di: Element) -> str:
    if not name:
        return ""
    lb = _label_box(di)
    cx, cy = (lb.x + lb.w / 2, lb.y + lb.h / 2) if lb is not None else (b.x + b.w / 2, b.y + b.h + 14)
    return f'<text class="label" x="{cx:g}" y="{cy:g}">{escape(name)}</text>'


def _edge(el: Element, points: list[tuple[float, float]], di: Element) -> str:
    kind = {"messageFlow": " message", "association": " association"}.get(el.tag, "")
    arrow = ' marker-end="url(#arrow)"' if el.tag in ("sequenceFlow", "messageFlow") else ""
    path = " ".join(f"{x:g},{y:g}" for x, y in points)
    name = el.get("name") or ""
    label = ""
    if name:
        lb = _label_box(di)
        if lb is not None:
            cx, cy = lb.x + lb.w / 2, lb.y + lb.h / 2
        else:
            (ax, ay), (bx, by) = points[len(points) // 2 - 1], points[len(points) // 2]
            cx, cy = (ax + bx) / 2, (ay + by) / 2 - 8
        label = f'<text class="label" x="{cx:g}" y="{cy:g}">{escape(name)}</text>'
    return f'<g data-element={quoteattr(el.get("id") or "")}><polyline class="edge{kind}" points="{path}"{arrow}/>' \
           f"{label}</g>"


def _wrap(text: str, width: int) -> list[str]:
    """Words into lines of about ``width`` characters (a word longer than that is cut)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > width:
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:width])
            word = word[width:]
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        lines.append(current)
    return lines


def _empty(title: str | None) -> str:
    text = escape(f"{title}: " if title else "") + "this flow's BPMN has no diagram"
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 40" width="400" height="40" role="img">'
            f'<text x="200" y="20" font-family="sans-serif" font-size="12" text-anchor="middle">{text}</text></svg>\n')


def step_states(rows: Iterable[object]) -> dict[str, str]:
    """Step id -> current/done/rejected from an instance's task rows (an open row wins, then a rejection)."""
    out: dict[str, str] = {}
    rank = {"done": 1, "rejected": 2, "current": 3}
    for row in rows:
        status, step = getattr(row, "status", None), getattr(row, "step", None)
        state = {"waiting": "current", "ready": "current", "approved": "done", "rejected": "rejected"}.get(
            str(status))
        if step is None or state is None:
            continue
        if rank[state] > rank.get(out.get(str(step), ""), 0):
            out[str(step)] = state
    return out
