"""The package graph stays a stack (docs/architecture.md): no two packages import each
other, however indirectly, and `touchline.core` imports nothing above it."""

from __future__ import annotations

import itertools
from functools import cache

import grimp
import pytest

# What `touchline.core` may use besides itself: the tables its changesets name, and the value
# checks it shares with the API. It writes nothing, so no SQL helper and no session.
CORE_MAY_IMPORT = frozenset({"touchline.core", "touchline.models", "touchline.validation"})


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("touchline", cache_dir=None)


def package(module: str) -> str:
    """`touchline.sequences.service` → `touchline.sequences`; top-level modules are their own."""
    return ".".join(module.split(".")[:2])


def package_imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in graph().modules:
        for imported in graph().find_modules_directly_imported_by(module):
            if package(imported) != package(module):
                edges.setdefault(package(module), set()).add(package(imported))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_two_packages_import_each_other() -> None:
    found = cycles(package_imports())
    shown = []
    for component in found:
        for a, b in itertools.permutations(component, 2):
            chain = graph().find_shortest_chain(importer=a, imported=b, as_packages=True)
            if chain:
                shown.append(" -> ".join(chain))
    assert found == [], "\n".join(shown)


def test_core_imports_nothing_above_it() -> None:
    above = {
        (module, imported)
        for module in graph().find_descendants("touchline.core") | {"touchline.core"}
        for imported in graph().find_modules_directly_imported_by(module)
        if imported.startswith("touchline") and package(imported) not in CORE_MAY_IMPORT
    }
    assert above == set()


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_cycles_are_found(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert sorted(cycles(edges)) == expected
