"""The contract lists every ErrorInfo reason the server gives: the ErrorReason enum in proto/, each value
documented with the status code the server sends it with.

The reasons and their status codes are read from the source (the scan of tests/test_reasons.py finds every
reason; here each one also gets the status of the error class it is raised with, or the class whose default
it is, or, for a validation issue's code, InvalidFile's or RuleViolation's). The enum and its comments are
read from `buf build`'s descriptors, so what is checked is what every generated client gets.
"""

from __future__ import annotations

import ast
import inspect
import shutil
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

from server.api.errors import DOMAIN, code_for_kind
from server.domain.validation.rules import RULE_CODES
from server.model import errors
from tests.support import ROOT
from tests.test_contract import buf
from tests.test_reasons import TABLE_SUFFIX, _enclosing_function, _is_table, _parents, _strings, scan, server_sources

PREFIX = "ERROR_REASON_"
ENUM_FILE = "quarry/v1/error_reason.proto"
_ENUM_TYPE, _ENUM_VALUE = 5, 2  # FileDescriptorProto.enum_type, EnumDescriptorProto.value


def declared(proto_root: Path = ROOT, *, retired: bool = False) -> dict[str, tuple[int, str]]:
    """ErrorReason as buf compiles it: reason (the value's name without the prefix) -> (number, comment); the
    reasons in use, or with `retired` those marked deprecated (kept for clients built against them, never sent)."""
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "reasons.binpb"
        result = buf("build", "--path", f"proto/{ENUM_FILE}", "-o", str(image), cwd=proto_root)
        assert result.returncode == 0, result.stderr
        files = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file
    file = next(f for f in files if f.name == ENUM_FILE)
    [enum] = [e for e in file.enum_type if e.name == "ErrorReason"]
    enum_index = list(file.enum_type).index(enum)
    comments = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
    return {value.name.removeprefix(PREFIX): (value.number, comments.get((_ENUM_TYPE, enum_index, _ENUM_VALUE, i), ""))
            for i, value in enumerate(enum.value) if value.number != 0 and value.options.deprecated == retired}


def _error_classes() -> dict[str, type[errors.QuarryError]]:
    return {name: cls for name, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.QuarryError)}


def _tables(trees: list[ast.Module]) -> dict[str, list[str]]:
    """The strings of every *_REASONS table, by name."""
    tables: dict[str, list[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.endswith(TABLE_SUFFIX):
                        tables[target.id] = _strings(node.value)
    return tables


def _reasons_of(value: ast.expr, call: ast.Call, parents: dict[ast.AST, ast.AST],
                tables: dict[str, list[str]]) -> list[str]:
    """The reasons a `reason=` argument can be: a constant, a table's values, or what the function assigns."""
    if isinstance(value, ast.Constant):
        return [value.value] if isinstance(value.value, str) else []
    if _is_table(value):
        table = value.value if isinstance(value, ast.Subscript) else value.func.value  # type: ignore[attr-defined]
        return tables[table.id]
    function = _enclosing_function(call, parents)
    if isinstance(value, ast.Name) and function is not None:
        assigned = [node.value for node in ast.walk(function) if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == value.id for t in node.targets)]
        return [s for expression in assigned for s in _strings(expression)]
    return []  # passed on from another error: listed where it was made


def reason_codes() -> dict[str, set[str]]:
    """Every reason the server can give -> the status code names it comes with."""
    classes = _error_classes()
    paths = server_sources()
    trees = [ast.parse(path.read_text()) for path in paths]
    tables = _tables(trees)
    codes: dict[str, set[str]] = {}

    def add(reason: str, kind: errors.ErrorKind) -> None:
        codes.setdefault(reason, set()).add(code_for_kind(kind).name)

    for tree in trees:
        parents = _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            if isinstance(callee, ast.Attribute) and callee.attr == "field":
                callee = callee.value  # InvalidArgument.field(..., reason=...)
            name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
            for keyword in node.keywords:
                if keyword.arg == "reason" and name in classes:
                    for reason in _reasons_of(keyword.value, node, parents, tables):
                        add(reason, classes[name].kind)
    for cls in classes.values():
        if "reason" in cls.__dict__:
            add(cls.reason, cls.kind)
    found = scan(paths)
    for reason, places in found.reasons.items():
        if any(place.endswith("(issue)") for place in places):  # a validation issue's code fails the file
            add(reason, errors.RuleViolation.kind if reason in RULE_CODES else errors.InvalidFile.kind)
    assert set(codes) == set(found.reasons), "reasons whose status could not be told: " + ", ".join(
        sorted(set(found.reasons) - set(codes)))
    return codes


def missing_from(enum: dict[str, tuple[int, str]], raised: dict[str, set[str]]) -> list[str]:
    """Reasons the server gives that the enum does not list."""
    return sorted(set(raised) - set(enum))


def test_the_server_gives_no_reason_the_contract_does_not_list() -> None:
    missing = missing_from(declared(), reason_codes())
    assert missing == [], f"add these to ErrorReason in proto/{ENUM_FILE}: {missing}"


def test_the_contract_lists_no_reason_the_server_never_gives() -> None:
    stale = sorted(set(declared()) - set(reason_codes()))
    assert stale == [], f"remove these from ErrorReason (and reserve their numbers and names): {stale}"


def test_a_retired_reason_is_never_given_and_says_so() -> None:
    retired = declared(retired=True)
    assert "TOO_MANY_CHANGES" in retired  # DiffVersions pages instead
    assert not set(retired) & set(reason_codes()), "a reason marked deprecated is still raised"
    assert all(comment.lstrip().startswith("Retired, never sent") for _, comment in retired.values()), retired


def test_each_reason_documents_its_status_code_and_meaning() -> None:
    raised = reason_codes()
    wrong = []
    for reason, (_, comment) in sorted(declared().items()):
        text = " ".join(comment.split())
        codes = raised.get(reason, set())
        said = text.split(":", 1)[0].split(" (", 1)[0]
        if len(codes) != 1 or said != next(iter(codes)) or len(text) < len(said) + 20:
            wrong.append(f"{reason}: the server sends it with {sorted(codes)}; its comment says {text!r}")
    assert wrong == [], "\n".join(wrong)


def test_the_error_domain_is_the_documented_one() -> None:
    # AIP-193: the domain names the service; clients (the TypeScript one) compare it before trusting a reason.
    assert DOMAIN == "quarry.dev"
    assert f'`domain` is "{DOMAIN}"' in (ROOT / "proto" / ENUM_FILE).read_text()
    assert f'ERROR_DOMAIN = "{DOMAIN}"' in (ROOT / "clients/typescript/src/errors.ts").read_text()


def test_the_guard_fails_when_a_reason_is_removed_from_the_enum(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    enum_file = tmp_path / "proto" / ENUM_FILE
    lines = enum_file.read_text().splitlines(keepends=True)
    [line] = [i for i, text in enumerate(lines) if f"{PREFIX}WRONG_OFFSET =" in text]
    enum_file.write_text("".join(lines[:line] + lines[line + 1:]))
    assert missing_from(declared(tmp_path), reason_codes()) == ["WRONG_OFFSET"]
