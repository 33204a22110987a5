"""Lineage graph: dataset versions -> stage I -> II -> III registered versions, as a hand-written SVG.

Model versions are placed in columns by how many parents they have (a root version is column 1); a
dataset sits one column left of the first version trained on it. Edges follow the
`svd.parent_model_version` and `svd.dataset_version` / `svd.dataset_uri` version tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

from flows.apps.dashboard.model import DatasetBuild, ModelVersion, RegisteredModel

PARENT_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 236, 58, 64, 18, 16
MAX_MODEL_NODES = 60
ALIAS_COLORS = {"champion": "#c58a00", "previous": "#6b7785"}


@dataclass
class Node:
    key: str
    kind: str
    """dataset | model | missing (a parent the registry no longer has)."""
    title: str
    subtitle: str
    aliases: list[str] = field(default_factory=list)
    column: int = 0
    row: int = 0


@dataclass
class Graph:
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    """(from key, to key)."""
    dropped: int = 0
    """Older model versions left out to keep the graph readable."""


def _dataset_names(builds: list[DatasetBuild]) -> dict[str, str]:
    """Dataset version or table URI -> dataset name, from the builds the dashboard read."""
    names: dict[str, str] = {}
    for build in builds:
        for ds in build.datasets:
            for key in (ds.version, ds.uri):
                if key:
                    names[key] = ds.name
    return names


def _dataset_node(version: ModelVersion, names: dict[str, str]) -> Node | None:
    ds_version = version.tags.get("svd.dataset_version", "")
    ds_uri = version.tags.get("svd.dataset_uri", "")
    key = ds_version or ds_uri
    if not key:
        return None
    name = names.get(ds_version) or names.get(ds_uri) or (ds_uri.rstrip("/").rsplit("/", 1)[-1] or "dataset")
    return Node(f"dataset:{key}", "dataset", name, ds_version or "version unknown")


def build_graph(models: list[RegisteredModel], builds: list[DatasetBuild]) -> Graph:
    """Nodes and edges of the lineage graph (the newest MAX_MODEL_NODES versions and their datasets)."""
    versions = [v for m in models for v in m.versions]
    versions.sort(key=lambda v: (v.created, int(v.version)), reverse=True)
    dropped = max(0, len(versions) - MAX_MODEL_NODES)
    versions = versions[:MAX_MODEL_NODES]
    names = _dataset_names(builds)
    by_uri = {v.uri: v for m in models for v in m.versions}
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    for v in versions:
        stage = v.tags.get("svd.stage", "")
        nodes[v.uri] = Node(
            v.uri, "model", f"{v.name} v{v.version}", f"stage {stage}" if stage else "", v.aliases
        )
    for v in versions:
        parent = v.parent
        if parent:
            if parent not in nodes:
                match = PARENT_URI.match(parent)
                title = f"{match['name']} v{match['version']}" if match else parent
                where = "older version, not drawn" if parent in by_uri else "not in the registry"
                nodes[parent] = Node(parent, "missing", title, where)
            edges.append((parent, v.uri))
        dataset = _dataset_node(v, names)
        parent_version = by_uri.get(parent)
        parent_dataset = _dataset_node(parent_version, names) if parent_version else None
        # a dataset edge only where the data changes: a chain trained on one dataset shows it once
        if dataset is not None and (parent_dataset is None or parent_dataset.key != dataset.key):
            nodes.setdefault(dataset.key, dataset)
            edges.append((dataset.key, v.uri))
    _place(nodes, edges)
    return Graph(nodes, edges, dropped)


def _place(nodes: dict[str, Node], edges: list[tuple[str, str]]) -> None:
    """Columns from the parent chain (cycle-safe), datasets left of their first child; then rows."""
    parents = {dst: src for src, dst in edges if not src.startswith("dataset:")}

    def depth(key: str, seen: frozenset[str] = frozenset()) -> int:
        parent = parents.get(key)
        if parent is None or parent in seen or parent not in nodes:
            return 1
        return depth(parent, seen | {key}) + 1

    for node in nodes.values():
        if node.kind != "dataset":
            node.column = depth(node.key)
    for node in nodes.values():
        if node.kind == "dataset":
            children = [nodes[dst].column for src, dst in edges if src == node.key]
            node.column = max(0, min(children) - 1) if children else 0
    by_column: dict[int, list[Node]] = {}
    for node in sorted(nodes.values(), key=lambda n: (n.kind != "dataset", n.title)):
        by_column.setdefault(node.column, []).append(node)
    for column_nodes in by_column.values():
        for row, node in enumerate(column_nodes):
            node.row = row


def _xy(node: Node) -> tuple[int, int]:
    return PAD + node.column * (NODE_W + COL_GAP), PAD + node.row * (NODE_H + ROW_GAP)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node_svg(node: Node) -> str:
    x, y = _xy(node)
    fill = {"dataset": "#eef6ee", "model": "#eef3fd", "missing": "#f6f6f6"}[node.kind]
    stroke = next((ALIAS_COLORS[a] for a in ("champion", "previous") if a in node.aliases), "#8593a3")
    width = 3 if node.aliases else 1.2
    dash = ' stroke-dasharray="4 3"' if node.kind == "missing" else ""
    badge = ""
    if node.aliases:
        text = ", ".join(node.aliases)
        badge = (
            f'<text x="{x + NODE_W - 8}" y="{y + 16}" text-anchor="end" class="lin-alias" '
            f'fill="{stroke}">{escape(text)}</text>'
        )
    return (
        f'<g class="lin-node lin-{node.kind}"><title>{escape(node.key)}</title>'
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{width}"{dash}/>'
        f'<text x="{x + 10}" y="{y + 24}" class="lin-title">{escape(_clip(node.title, 27))}</text>'
        f'<text x="{x + 10}" y="{y + 44}" class="lin-sub">{escape(_clip(node.subtitle, 32))}</text>{badge}</g>'
    )


def _edge_svg(src: Node, dst: Node) -> str:
    x1, y1 = _xy(src)
    x2, y2 = _xy(dst)
    x1, y1, y2 = x1 + NODE_W, y1 + NODE_H // 2, y2 + NODE_H // 2
    mid = (x1 + x2) / 2
    return (
        f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 2},{y2}" fill="none" stroke="#7b8794" '
        f'stroke-width="1.4" marker-end="url(#lin-arrow)"/>'
    )


def lineage_svg(graph: Graph) -> str:
    """The graph as a standalone inline <svg> element (empty string when there is nothing to draw)."""
    if not graph.nodes:
        return ""
    columns = max(n.column for n in graph.nodes.values()) + 1
    rows = max(n.row for n in graph.nodes.values()) + 1
    width = 2 * PAD + columns * NODE_W + (columns - 1) * COL_GAP
    height = 2 * PAD + rows * NODE_H + (rows - 1) * ROW_GAP
    edges = [_edge_svg(graph.nodes[s], graph.nodes[d]) for s, d in graph.edges]
    nodes = [_node_svg(n) for n in graph.nodes.values()]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage from datasets to model versions">'
        '<defs><marker id="lin-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7b8794"/>'
        f"</marker></defs>{''.join(edges)}{''.join(nodes)}</svg>"
    )
