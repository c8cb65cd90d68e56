"""The house as docs/architecture.md draws it: every module in its layer, imports only pointing
down (or within a layer), no circle; every path the page names exists; every route and command
is described in docs/interfaces.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "storemon"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
INTERFACES = (ROOT / "docs" / "interfaces.md").read_text(encoding="utf-8")


def module_of(path: Path) -> str:
    """``storemon/storage/reads.py`` -> ``storage`` (a package is one room); ``storemon/api.py`` -> ``api``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if len(parts) > 1 else parts[0]


def layers() -> dict[str, int]:
    """The table of docs/architecture.md: module -> its layer."""
    found = {}
    for layer, cell in re.findall(r"^\| (\d+) \| ([^|]+) \|", ARCHITECTURE, re.M):
        for name in re.findall(r"`([\w.]+?)(?:\.py|/)`", cell):
            found[name] = int(layer)
    return found


def imports() -> dict[str, set[str]]:
    """module -> the package's modules it imports (relative and absolute imports alike)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_of(path)
        inside = path.parent != PACKAGE  # a module of a sub-package: `from . import x` stays in it
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0 and (node.module or "").startswith("storemon."):
                    names.add(node.module.split(".")[1])
                elif node.level == 1 and not inside or node.level == 2 and inside:
                    names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("storemon.")}
        names = {n for n in names if (PACKAGE / f"{n}.py").exists() or (PACKAGE / n).is_dir()}
        graph.setdefault(here, set()).update(names - {here})
    return graph


def test_every_module_has_its_layer_on_the_page():
    modules = {module_of(p) for p in PACKAGE.rglob("*.py")}
    assert modules == set(layers()), f"not on the page: {modules - set(layers())}; gone: {set(layers()) - modules}"


def test_imports_only_point_down_the_layers():
    layer = layers()
    upward = [
        f"{a} ({layer[a]}) -> {b} ({layer[b]})" for a, deps in imports().items() for b in deps if layer[b] > layer[a]
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    graph = imports()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("circle: " + " -> ".join(trail[trail.index(nxt) :] + [node, nxt]))
            if not state.get(nxt):
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [])


def test_every_path_the_page_names_exists():
    named = set(
        re.findall(r"`((?:storemon/|bench/|scripts/|tests/|docs/)?[\w./-]+\.(?:py|md|sh)|[\w-]+/)`", ARCHITECTURE)
    )
    assert len(named) > 20
    missing = [
        name for name in sorted(named) if not any(candidate.exists() for candidate in (ROOT / name, PACKAGE / name))
    ]
    assert missing == []


def test_every_route_is_described_in_interfaces(app):
    headings = "\n".join(line for line in INTERFACES.splitlines() if line.startswith("### "))
    undescribed = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "dashboard.static", "docs.static"):
            continue
        literal = re.sub(
            r"<(?:\w+:)?(\w+)>", lambda m: "<id>" if m.group(1).endswith("id") else f"<{m.group(1)}>", rule.rule
        )
        literal = literal.replace("/ingest/<kind>", "/ingest/status")
        if f"`{literal}" not in headings and f"{literal}`" not in headings and f" {literal}" not in headings:
            undescribed.append(rule.rule)
    assert undescribed == []


def test_every_command_is_described_in_interfaces(app):
    from storemon.__main__ import serve_command

    commands = set(app.cli.commands) | {serve_command.name}
    described = set(re.findall(r"^### `(?:flask --app storemon|storemon) ([\w-]+)", INTERFACES, re.M))
    assert commands <= described, f"undescribed: {sorted(commands - described)}"
