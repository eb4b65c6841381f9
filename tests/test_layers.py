"""Imports point down only: api → domain → storage → model, and the rules around them.

Every module under server/ and workers/ is parsed (imports inside functions count too) and each import of
one of our modules is checked against the rules below. A failure names the importing module, the imported
one and the rule broken.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layers, bottom first. Each may import its own layer and those listed.
# Leaf helpers every layer may use (they import only model), and the package's own __init__ (its version).
SUPPORT = ("server", "server.metrics", "server.logs")
RULES: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "support": ("model", "support"),
    "config": ("model", "config"),
    "storage": ("model", "support", "storage"),
    "domain": ("model", "support", "storage", "domain"),
    "api": ("model", "support", "domain", "api"),
    "workers": ("model", "support", "config", "storage", "domain", "root", "workers"),
    "root": ("model", "support", "config", "storage", "domain", "api", "root", "workers"),
}
# Third-party packages that belong to one layer only.
DRIVERS: dict[str, tuple[str, ...]] = {
    "asyncpg": ("storage", "root"),
    "grpc": ("api", "root"),
    "arq": ("server.storage.jobqueue", "workers.runtime"),
}


def layer_of(module: str) -> str | None:
    """The layer of one of our modules (None for anything else)."""
    if module in SUPPORT:
        return "support"
    if module.startswith("server.embedded") or module in (
            "server.app", "server.bootstrap", "server.cli", "server.composition", "server.connections",
            "server.listen_ports", "server.__main__", "server.probes"):
        return "root"
    if module == "server.settings":
        return "config"
    for layer in ("model", "storage", "domain", "api"):
        if module == f"server.{layer}" or module.startswith(f"server.{layer}."):
            return layer
    if module == "workers" or module.startswith("workers."):
        return "workers"
    return None


def is_module(name: str) -> bool:
    """Whether a dotted name is one of our modules or packages (not a name defined in one)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str) -> list[str]:
    """Every module an import statement in `source` names (relative imports resolved against `module`)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[:-node.level]
                base = ".".join([*anchor, base] if base else anchor)
            # `from server import metrics` imports the module server.metrics, not server itself
            submodules = [f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}")]
            found += submodules if len(submodules) == len(node.names) else [base, *submodules]
    return found


def violations(modules: dict[str, list[str]]) -> list[str]:
    """The broken rules, one line each, for modules and what each imports."""
    broken: list[str] = []
    for importer, imported in modules.items():
        here = layer_of(importer)
        if here is None:
            continue
        for target in imported:
            there = layer_of(target)
            if there is not None and there not in RULES[here]:
                broken.append(f"{importer} ({here}) imports {target} ({there}): {here} may import only "
                              f"{', '.join(RULES[here])}")
            top = target.split(".")[0]
            if top in DRIVERS:
                allowed = DRIVERS[top]
                if here not in allowed and not any(importer == a or importer.startswith(a + ".") for a in allowed):
                    broken.append(f"{importer} ({here}) imports {top}: only {', '.join(allowed)} may")
    return broken


def our_modules() -> dict[str, list[str]]:
    modules = {}
    for package in ("server", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = module_name(path)
            modules[name] = imports_of(path.read_text(), name)
    return modules


def test_imports_point_down_only() -> None:
    modules = our_modules()
    assert len(modules) > 60  # the walk found the tree
    assert violations(modules) == []


@pytest.mark.parametrize(("importer", "imported", "rule"), [
    ("server.storage.uploads", "server.domain.uploads", "imports server.domain.uploads (domain): storage may"),
    ("server.model.names", "server.storage.db", "model may import only model"),
    ("server.domain.files", "server.api.convert", "domain may import only"),
    ("server.api.uploads", "server.storage.uploads", "api may import only"),
    ("server.api.uploads", "server.settings", "api may import only"),
    ("workers.jobs", "server.api.errors", "workers may import only"),
    ("server.domain.versions", "asyncpg", "only storage, root may"),
    ("server.domain.uploads", "grpc", "only api, root may"),
    ("server.domain.pipeline", "arq.worker", "only server.storage.jobqueue, workers.runtime may"),
])
def test_each_rule_catches_its_break(importer: str, imported: str, rule: str) -> None:
    # The same check as above, on one synthetic module that breaks one rule.
    source = f"import {imported}\n" if "." not in imported or imported.startswith("arq") else \
        f"from {imported.rsplit('.', 1)[0]} import {imported.rsplit('.', 1)[1]}\n"
    broken = violations({importer: imports_of(source, importer)})
    assert broken and any(rule in line for line in broken), broken


def test_relative_imports_resolve() -> None:
    assert "server.domain.errors" in imports_of("from .errors import X\n", "server.domain.uploads")
