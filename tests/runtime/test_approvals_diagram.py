"""The approval diagram drawn as SVG from the BPMN diagram interchange (``engine.runtime.approvals.diagram``):
every real file and the shipped flows draw every shape and edge of their diagram, texts from the file are
escaped, a file without a diagram says so -- and in a real browser (Chromium) the waiting step is drawn
orange, the approved one green, every shape inside the picture and every task's name inside its box."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest

from engine.runtime.approvals import diagram
from tests.conftest import in_ci
from tests.dsl.approvals_helpers import BPMNDI, flow_of

ROOT = Path(__file__).resolve().parents[2]
REAL = sorted((ROOT / "tests" / "fixtures" / "realworld" / "bpmn").glob("*.bpmn"))
SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _process_id(xml: str) -> str:
    found = re.search(r'<(?:\w+:)?process id="([^"]+)"', xml)
    assert found is not None
    return found.group(1)


def _drawn(svg: str) -> list[str]:
    return [g.get("data-element") or "" for g in ElementTree.fromstring(svg).iter(f"{SVG}g")]


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_every_real_file_draws_every_shape_and_edge_of_its_diagram(path: Path) -> None:
    xml = path.read_text(encoding="utf-8")
    svg = diagram.render(xml, _process_id(xml))
    tree = ElementTree.fromstring(xml)
    planes = list(tree.iter(f"{BPMNDI}BPMNPlane"))
    wanted = {e.get("bpmnElement") for e in planes[0].iter() if e.tag in (f"{BPMNDI}BPMNShape", f"{BPMNDI}BPMNEdge")}
    assert set(_drawn(svg)) == wanted


def test_the_shipped_flows_draw_with_the_steps_marked() -> None:
    flow = flow_of(ROOT / "configs" / "base", "quote_discount")
    svg = diagram.render(flow.bpmn_xml, flow.process_id, {"manager": "done", "director": "current"})
    marked = {g.get("data-element"): (g[0].get("class") or "") for g in ElementTree.fromstring(svg).iter(f"{SVG}g")}
    assert "done" in marked["manager"] and "current" in marked["director"]
    assert not {"done", "current", "rejected"} & set(marked["finance"].split())
    assert set(flow.steps) <= set(marked)


def test_texts_of_the_file_are_escaped() -> None:
    xml = (ROOT / "configs" / "base" / "approvals" / "flows" / "contract_risk.bpmn").read_text(encoding="utf-8")
    evil = xml.replace('name="Legal review"', 'name="&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"')
    svg = diagram.render(evil, "contract_risk", title='<img src=x onerror="y">')
    root = ElementTree.fromstring(svg)  # well-formed
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter(f"{SVG}img"))
    assert "&lt;script&gt;" in svg and "1)&lt;/script&gt; &amp;" in svg and "<script" not in svg and "<img" not in svg


def test_a_file_without_a_diagram_gives_a_picture_saying_so() -> None:
    xml = (ROOT / "configs" / "base" / "approvals" / "flows" / "contract_risk.bpmn").read_text(encoding="utf-8")
    bare = re.sub(r"<bpmndi:BPMNDiagram.*</bpmndi:BPMNDiagram>", "", xml, flags=re.S)
    svg = diagram.render(bare, "contract_risk")
    assert "has no diagram" in svg and ElementTree.fromstring(svg) is not None


def test_step_states_prefer_an_open_row_then_a_rejection() -> None:
    class Row:
        def __init__(self, step: str, status: str) -> None:
            self.step, self.status = step, status

    rows = [Row("a", "approved"), Row("a", "ready"), Row("b", "approved"), Row("b", "rejected"),
            Row("c", "cancelled"), Row("d", "reassigned"), Row("d", "approved")]
    assert diagram.step_states(rows) == {"a": "current", "b": "rejected", "d": "done"}


@pytest.mark.skipif(not CHROMIUM and not in_ci(), reason="no Chromium here (CI installs it)")
def test_in_a_real_browser_the_steps_are_coloured_and_every_name_fits(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI must have Chromium (apt install chromium)"
    flow = flow_of(ROOT / "configs" / "base", "quote_discount")
    page_file = tmp_path / "quote_discount.svg"
    page_file.write_text(diagram.render(flow.bpmn_xml, flow.process_id, {"manager": "done", "director": "current"}),
                         encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(page_file.as_uri())
            svg_box = page.locator("svg").bounding_box()
            assert svg_box is not None

            def stroke(element: str) -> str:
                return str(page.locator(f'g[data-element="{element}"] > :first-child').evaluate(
                    "e => getComputedStyle(e).stroke"))

            assert stroke("director") == "rgb(232, 89, 12)"  # waiting now: orange
            assert stroke("manager") == "rgb(43, 138, 62)"  # approved: green
            assert stroke("finance") == "rgb(34, 36, 42)"  # not reached: plain
            for step in flow.steps:
                box = page.locator(f'g[data-element="{step}"] > rect').bounding_box()
                text = page.locator(f'g[data-element="{step}"] > text').bounding_box()
                assert box is not None and text is not None
                assert svg_box["x"] <= box["x"] and box["x"] + box["width"] <= svg_box["x"] + svg_box["width"]
                assert box["x"] <= text["x"] and text["x"] + text["width"] <= box["x"] + box["width"], step
                assert box["y"] <= text["y"] and text["y"] + text["height"] <= box["y"] + box["height"], step
        finally:
            browser.close()
