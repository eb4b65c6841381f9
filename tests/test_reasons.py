"""Every ErrorInfo reason the server can give is named by a test, and the guard can list them all.

The reasons are read from the source with `ast`, wherever a reason comes from:
- a `reason="..."` keyword argument (an error raised, a Failure built);
- a `reason = ...` name a function assigns and then passes as `reason=reason` (e.g. `not_open()`);
- a class-level `reason = "..."` (the default of an error class, in server/model/errors.py);
- a table whose name ends in `_REASONS` (e.g. `ENDED_REASONS`), and `RULE_CODES` (the dataset rules' codes);
- the code of a validation `Issue("CODE", ...)`: the first issue's code becomes the failure's reason.

A reason computed some other way (`"UPLOAD_" + state`) cannot be listed, so it fails the guard: spell it out
in a table instead. A test names a reason when a test file (other than this one and the SDK's, whose
servers are mostly fakes) holds it in quotes. There is no exemption list: a reason no code path can give is
removed from the server instead.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from server.domain.validation.rules import RULE_CODES as RULE_CODES_OF_THE_RULES
from server.model import errors

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("server", "workers")
UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
TABLE_SUFFIX = "_REASONS"
RULE_CODES = "RULE_CODES"  # the codes that make a failure a RuleViolation: each must be some Issue's code
# `reason=` values that pass on a reason chosen elsewhere (and listed there): an error's or a stored
# failure's reason, an issue's code.
PASSED_ON = re.compile(r"(\w+\.)+(reason|code)")


@dataclass
class Found:
    """Every reason in the sources (reason -> where), and what the guard could not read."""

    reasons: dict[str, list[str]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def add(self, value: object, where: str) -> None:
        if not isinstance(value, str) or not UPPER_SNAKE.fullmatch(value):
            self.unreadable.append(f"{where}: {value!r} is not an UPPER_SNAKE reason")
            return
        self.reasons.setdefault(value, []).append(where)


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
    return None


def _is_table(node: ast.AST) -> bool:
    """`SOME_REASONS[key]` or `SOME_REASONS.get(key, ...)`: a lookup in a listed table."""
    if isinstance(node, ast.Subscript):
        node = node.value
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        node = node.func.value
    return isinstance(node, ast.Name) and node.id.endswith(TABLE_SUFFIX)


def _reason_argument(value: ast.expr, where: str, function: ast.AST | None, found: Found) -> None:
    if isinstance(value, ast.Constant):
        if value.value is not None:  # None: the class's default
            found.add(value.value, where)
        return
    if _is_table(value) or PASSED_ON.fullmatch(ast.unparse(value)):
        return
    if isinstance(value, ast.Name) and isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        if value.id in {a.arg for a in function.args.args + function.args.kwonlyargs}:
            return  # a parameter: the caller's reason, listed at the caller
        assigned = [a.value for a in ast.walk(function) if isinstance(a, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == value.id for t in a.targets)]
        if assigned and all(_strings(a) or _is_table(a) for a in assigned):
            for expression in assigned:
                for string in _strings(expression):
                    found.add(string, f"{where} (via {value.id})")
            return
    found.unreadable.append(f"{where}: reason={ast.unparse(value)} is computed; spell it out in a *_REASONS table")


def scan(files: Iterable[Path], root: Path = ROOT) -> Found:
    """The reasons the given source files can give."""
    found = Found()
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        parents = _parents(tree)
        name = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "reason":
                        _reason_argument(keyword.value, where, _enclosing_function(node, parents), found)
                callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if callee == "Issue" and node.args:
                    code = node.args[0]
                    if isinstance(code, ast.Constant):
                        found.add(code.value, f"{where} (issue)")
                    else:
                        found.unreadable.append(f"{where}: Issue({ast.unparse(code)}, ...) has a computed code")
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant)
                            and any(isinstance(t, ast.Name) and t.id == "reason" for t in statement.targets)):
                        found.add(statement.value.value, f"{name}:{statement.lineno} (class {node.name})")
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and (t.id.endswith(TABLE_SUFFIX) or t.id == RULE_CODES)
                    for t in node.targets):
                values = node.value.values if isinstance(node.value, ast.Dict) else [node.value]
                for value in values:
                    for string in _strings(value):  # type: ignore[arg-type]
                        found.add(string, f"{where} (table)")
    return found


def server_sources() -> list[Path]:
    return sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py"))


def naming_files() -> list[Path]:
    """The test files that may name a reason: not this one (it names none), not the SDK's."""
    return sorted(p for p in (ROOT / "tests").rglob("*.py")
                  if p.name != Path(__file__).name and not p.name.startswith("test_sdk_"))


def unnamed(reasons: Iterable[str], tests: Iterable[Path]) -> list[str]:
    """The reasons no test file holds in quotes."""
    texts = [p.read_text() for p in tests]
    return sorted(r for r in reasons if not any(f'"{r}"' in t or f"'{r}'" in t for t in texts))


# --- the guard -----------------------------------------------------------------------------------------------


def test_every_reason_in_the_server_can_be_listed() -> None:
    found = scan(server_sources())
    assert found.unreadable == []
    assert len(found.reasons) > 80  # sanity: the scan sees the error tree, the tables and the issue codes
    for expected in ("EMPTY_COMMIT", "UPLOAD_FINISHED", "UPLOAD_EXPIRED", "WRONG_OFFSET", "COLUMN_REMOVED",
                     "RAGGED_ROW", "JOB_CRASHED"):
        assert expected in found.reasons
    # A rule's code is a reason only if some check reports it.
    issued = {r for r, places in found.reasons.items() if any(p.endswith("(issue)") for p in places)}
    assert RULE_CODES_OF_THE_RULES <= issued


def test_every_reason_in_the_server_is_named_by_a_test() -> None:
    found = scan(server_sources())
    missing = unnamed(found.reasons, naming_files())
    assert missing == [], "reasons no test names (where they are raised):\n" + "\n".join(
        f"  {r}: {', '.join(found.reasons[r])}" for r in missing)


def _error_classes() -> dict[str, type[errors.QuarryError]]:
    return {name: cls for name, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.QuarryError)}


def test_every_raise_of_a_class_without_a_default_reason_names_one() -> None:
    # Such a raise would fail with TypeError at run time: in the error path, where tests look least.
    without = {name for name, cls in _error_classes().items() if not hasattr(cls, "reason")}
    assert {"NotFound", "Unavailable", "QuarryError"} <= without
    offenders = []
    for path in server_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                callee = node.func
                if isinstance(callee, ast.Attribute) and callee.attr == "field":
                    callee = callee.value
                name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
                given = [k for k in node.keywords if k.arg == "reason" or k.arg is None]
                if name in without and not given:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...) without reason=")
    assert offenders == []


def test_every_class_default_reason_is_raised_somewhere() -> None:
    # A default nothing falls back on would be a reason the server never gives: then the class has none.
    classes = _error_classes()
    defaults = {name: cls.__dict__["reason"] for name, cls in classes.items() if "reason" in cls.__dict__}
    used = set()
    for path in server_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                callee = node.func
                if isinstance(callee, ast.Attribute) and callee.attr == "field":
                    callee = callee.value
                name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
                if name in classes and not any(k.arg == "reason" for k in node.keywords):
                    used.add(name)
    assert sorted(set(defaults) - used) == []


# --- the guard can fail -------------------------------------------------------------------------------------


def test_the_guard_reports_a_reason_no_test_names_and_a_computed_one(tmp_path: Path) -> None:
    source = tmp_path / "server" / "thing.py"
    source.parent.mkdir()
    source.write_text('''
TABLE_REASONS = {1: "FROM_A_TABLE"}

class Oops(Exception):
    reason = "CLASS_DEFAULT"

def fail(state, reason=None):
    picked = {2: "PICKED_HERE"}.get(state, "PICKED_OTHERWISE")
    raise Oops("x", reason=picked)

def computed(state):
    raise Oops("x", reason="GONE_" + state)

def passed_on(error):
    raise Oops("x", reason=error.reason)

issue = Issue("SOME_CODE", "message")
''')
    found = scan([source], tmp_path)
    assert sorted(found.reasons) == ["CLASS_DEFAULT", "FROM_A_TABLE", "PICKED_HERE", "PICKED_OTHERWISE",
                                     "SOME_CODE"]
    assert len(found.unreadable) == 1 and "GONE_" in found.unreadable[0]
    test = tmp_path / "test_thing.py"
    test.write_text('CASES = ["FROM_A_TABLE", \'PICKED_HERE\', "CLASS_DEFAULT", "SOME_CODE"]  # PICKED_OTHERWISE\n')
    # Named only in a comment, without quotes, is not named.
    assert unnamed(found.reasons, [test]) == ["PICKED_OTHERWISE"]
