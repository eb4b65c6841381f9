"""The `quarry` CLI as a subprocess against the real server (and worker): good input, bad input, no server."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sdk_support import Cli, assert_one_line_error, new_namespace
from tests.support import QuarryProcess, ServerHandle, refused_port


@pytest.fixture
def cli(server_file: ServerHandle, tmp_path: Path) -> Cli:
    """The CLI on the file-store server, in a namespace of the test's own."""
    return Cli(server_file.address, new_namespace(), tmp_path / "cache")


@pytest.fixture
def piped(cli: Cli, worker_file: QuarryProcess) -> Cli:
    """The CLI with a worker behind the server, so uploads become versions."""
    return cli


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "points.csv"
    path.write_text("id,name,score\n" + "".join(f"{i},n{i},{i / 2}\n" for i in range(100)))
    return path


def test_help_lists_every_command_and_the_exit_codes(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.returncode == 0
    for command in ("datasets", "upload", "uploads", "versions", "ls", "diff", "preview", "download", "serve"):
        assert command in result.stdout
    text = " ".join(result.stdout.split())  # rich wraps the epilog
    assert "Exit codes" in text and "3 cannot reach the server" in text
    assert cli.run("datasets", "--help").returncode == 0 and cli.run("uploads", "--help").returncode == 0


def test_datasets_lifecycle(cli: Cli) -> None:
    created = cli.json("datasets", "create", "sales", "-d", "Monthly sales", "-l", "team=bi", "-l", "tier=gold")
    assert created["name"] == f"namespaces/{cli.namespace}/datasets/sales"
    assert created["labels"] == {"team": "bi", "tier": "gold"} and created["state"] == "DATASET_STATE_DRAFT"
    cli.json("datasets", "create", "other")
    listed = cli.json("datasets", "ls")
    assert [d["name"].rsplit("/", 1)[-1] for d in listed] == ["other", "sales"]
    table = cli.run("datasets", "ls")
    assert table.returncode == 0 and "sales" in table.stdout and "Monthly sales" in table.stdout
    assert "DRAFT" in table.stdout
    filtered = cli.json("datasets", "ls", "--filter", 'labels.team = "bi"')
    assert [d["name"].rsplit("/", 1)[-1] for d in filtered] == ["sales"]
    shown = cli.run("datasets", "show", "sales")
    assert shown.returncode == 0 and "team=bi, tier=gold" in shown.stdout
    assert cli.json("datasets", "show", "sales")["description"] == "Monthly sales"
    removed = cli.run("datasets", "rm", "sales")
    assert removed.returncode == 0 and f"deleted namespaces/{cli.namespace}/datasets/sales" in removed.stdout
    assert [d["name"].rsplit("/", 1)[-1] for d in cli.json("datasets", "ls")] == ["other"]
    assert len(cli.json("datasets", "ls", "--all")) == 2
    # Bad input: one line with the status, exit 1 for the server's no, 2 for ours.
    assert "sales" in assert_one_line_error(cli.run("datasets", "show", "sales"), 1, "NOT_FOUND")
    assert_one_line_error(cli.run("datasets", "create", "other"), 1, "ALREADY_EXISTS")
    assert_one_line_error(cli.run("datasets", "create", "Bad Name!"), 1, "INVALID_ARGUMENT")
    assert_one_line_error(cli.run("datasets", "rm", "ghost"), 1, "NOT_FOUND")
    assert_one_line_error(cli.run("datasets", "ls", "--filter", "colour = blue"), 1, "INVALID_ARGUMENT")
    assert_one_line_error(cli.run("datasets", "create", "x", "-l", "no-equals"), 2)
    empty = Cli(cli.address, new_namespace(), cli.cache_dir).run("datasets", "ls")
    assert empty.returncode == 0 and empty.stdout == "" and "no datasets" in empty.stderr


def test_json_errors_carry_code_and_reason(cli: Cli) -> None:
    result = cli.run("datasets", "show", "ghost", "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "NOT_FOUND" and error["reason"] and error["exit_code"] == 1


def test_upload_a_file_then_list_show_and_cancel(cli: Cli, csv_file: Path) -> None:
    result = cli.json("upload", str(csv_file), "--dataset", "pts", "--path", "raw/points.csv")
    size = csv_file.stat().st_size
    assert (result["state"], result["path"], result["dataset"]) == ("UPLOAD_STATE_STAGED", "raw/points.csv", "pts")
    assert (result["size"], result["bytes_sent"], result["bytes_skipped"], result["resumed"]) == (size, size, 0, False)
    people = cli.run("upload", str(csv_file), "-d", "pts")
    assert people.returncode == 0 and "uploaded" in people.stdout and "STAGED" in people.stdout
    # A worker may be running (a session fixture of other tests): the uploads may have moved past STAGED.
    listed = cli.json("uploads", "ls", "--dataset", "pts")
    assert {u["path"] for u in listed} == {"raw/points.csv", "points.csv"}
    assert all(u["state"] != "UPLOAD_STATE_OPEN" for u in listed)
    assert cli.json("uploads", "ls", "--state", "open") == []
    table = cli.run("uploads", "ls")
    assert table.returncode == 0 and result["uid"] in table.stdout and "raw/points.csv" in table.stdout
    assert cli.json("uploads", "show", result["uid"])["name"] == result["upload"]
    assert cli.json("uploads", "cancel", result["uid"])["state"] == "UPLOAD_STATE_CANCELLED"
    assert [u["path"] for u in cli.json("uploads", "ls", "--state", "cancelled")] == ["raw/points.csv"]
    watched = cli.run("uploads", "watch", result["uid"], "--json")
    assert watched.returncode == 0 and json.loads(watched.stdout.splitlines()[-1])["state"] == "UPLOAD_STATE_CANCELLED"
    # Bad input.
    assert_one_line_error(cli.run("uploads", "cancel", "00000000-0000-0000-0000-000000000000"), 1, "NOT_FOUND")
    assert_one_line_error(cli.run("uploads", "ls", "--state", "sideways"), 1, "INVALID_ARGUMENT")
    assert_one_line_error(cli.run("uploads", "retry", result["uid"]), 1, "FAILED_PRECONDITION")
    assert_one_line_error(cli.run("upload", str(csv_file.parent / "missing.csv"), "-d", "pts"), 2)
    assert_one_line_error(cli.run("upload", str(csv_file), "-d", "Bad Name"), 1, "INVALID_ARGUMENT")
    assert_one_line_error(cli.run("upload", str(csv_file), "-d", "pts", "--ignore", "*.tmp"), 2)
    assert cli.run("upload", str(csv_file)).returncode == 2  # --dataset is required (typer's usage error)


def test_progress_bar_shows_bytes_and_rate(cli: Cli, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))
    result = cli.run("upload", str(big), "-d", "bar", "--progress")
    assert result.returncode == 0, result.stderr
    assert "big.bin" in result.stderr and "21.0/21.0 MB" in result.stderr and "MB/s" in result.stderr
    quiet = cli.run("upload", str(big), "-d", "bar", "-p", "again.bin")  # not a terminal: no bar
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_upload_wait_then_versions(piped: Cli, csv_file: Path) -> None:
    cli = piped
    result = cli.json("upload", str(csv_file), "-d", "pts", "--wait", "-m", "first points", "--wait-timeout", "60")
    assert result["state"] == "UPLOAD_STATE_PROMOTED"
    versions = cli.json("versions", "pts")
    assert [(v["number"], v["state"], v["message"]) for v in versions] == [("1", "VERSION_STATE_READY",
                                                                            "first points")]
    table = cli.run("versions", "pts")
    assert table.returncode == 0 and "READY" in table.stdout and "first points" in table.stdout
    assert cli.json("datasets", "show", "pts")["current_version_number"] == "1"
    assert_one_line_error(cli.run("versions", "ghost"), 1, "NOT_FOUND")


def test_invalid_file_with_wait_fails_and_shows_in_failed_uploads(piped: Cli, tmp_path: Path) -> None:
    cli = piped
    bad = tmp_path / "ragged.csv"
    bad.write_text("a,b\n1,2\n3\n")
    line = assert_one_line_error(cli.run("upload", str(bad), "-d", "pts", "--wait"), 5)
    assert "FAILED" in line and "RAGGED_ROW" in line
    [failed] = cli.json("uploads", "ls", "--state", "failed")
    assert failed["path"] == "ragged.csv" and failed["failure"]["reason"] == "RAGGED_ROW"
    table = cli.run("uploads", "ls", "--state", "failed")
    assert "RAGGED_ROW" in table.stdout
    refused = assert_one_line_error(cli.run("uploads", "retry", failed["uid"]), 1, "FAILED_PRECONDITION")
    assert "failed for good" in refused


def test_upload_a_directory_as_one_version(piped: Cli, tmp_path: Path) -> None:
    cli = piped
    root = tmp_path / "drop"
    (root / "nested").mkdir(parents=True)
    (root / "a.csv").write_text("x,y\n1,2\n")
    (root / "nested" / "b.jsonl").write_text('{"k": 1}\n')
    (root / "scratch.tmp").write_text("no")
    (root / "debug.log").write_text("no")
    (root / ".gitignore").write_text("*.log\n")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"message": "Drop one", "files": {"a.csv": "The points",
                                                                     "nested/b.jsonl": "The events"}}))
    result = cli.json("upload", str(root), "-d", "drop", "-p", "in", "--ignore", "*.tmp", "--manifest", str(manifest),
                      "--wait", "--wait-timeout", "60")
    assert sorted(f["path"] for f in result["files"]) == ["in/a.csv", "in/nested/b.jsonl"]
    assert result["ignored"] == [".gitignore", "debug.log", "scratch.tmp"]
    [version] = cli.json("versions", "drop")
    assert version["name"] == result["version"] and version["state"] == "VERSION_STATE_READY"
    assert version["file_count"] == "2"
    assert version["message"] == "Drop one\n\nin/a.csv: The points\nin/nested/b.jsonl: The events"
    # The text output names the version as the other commands take it (NAME@NUMBER), not by its long uid name.
    text = cli.run("upload", str(root), "-d", "drop2", "--ignore", "*.tmp", "--wait", "--wait-timeout", "60")
    assert text.returncode == 0 and "2 files (3 ignored) in version drop2@1 (READY)" in text.stdout, text
    bad_manifest = tmp_path / "bad.yaml"
    bad_manifest.write_text("files: [oops")
    assert_one_line_error(cli.run("upload", str(root), "-d", "drop", "--manifest", str(bad_manifest)), 2)
    assert_one_line_error(cli.run("upload", str(root), "-d", "drop", "--ignore", "*"), 2)


def test_diff_preview_download(piped: Cli, tmp_path: Path) -> None:
    cli = piped
    first, second = tmp_path / "t.csv", tmp_path / "t2.csv"
    first.write_text("id,v\n1,a\n2,b\n")
    second.write_text("id,v,w\n1,a,x\n2,b,y\n3,c,z\n")
    cli.json("upload", str(first), "-d", "tab", "-p", "t.csv", "--wait")
    cli.json("upload", str(second), "-d", "tab", "-p", "t.csv", "--wait")
    diff = cli.json("diff", "tab@1", "tab@2")
    assert [c["kind"] for c in diff["changes"]] == ["CHANGE_KIND_MODIFIED"]
    shown = cli.run("diff", "tab@1", "tab@2")
    assert "MODIFIED" in shown.stdout and "+w" in shown.stdout and "1 changed, 0 unchanged" in shown.stdout
    preview = cli.json("preview", "tab@2", "t.csv", "--rows", "2")
    assert preview["rows"] == [{"id": 1, "v": "a", "w": "x"}, {"id": 2, "v": "b", "w": "y"}]
    assert preview["row_count"] == 2 and preview["total_rows"] == 3
    assert "c" not in cli.run("preview", "tab@1", "t.csv").stdout.split()
    table = cli.run("preview", "tab", "t.csv")  # the latest version, for people
    assert table.returncode == 0 and "3 of 3 rows" in table.stdout and "w" in table.stdout.split()
    out = tmp_path / "copy.csv"
    got = cli.json("download", "tab@1", "t.csv", "-o", str(out))
    assert out.read_bytes() == first.read_bytes() and got["size"] == first.stat().st_size
    here = tmp_path / "here"
    here.mkdir()
    people = cli.run("download", "tab@2", "t.csv", cwd=here)  # no -o: the file's name, in the working directory
    assert people.returncode == 0 and "downloaded t.csv" in people.stdout, people.stderr
    assert (here / "t.csv").read_bytes() == second.read_bytes()
    assert_one_line_error(cli.run("preview", "tab@9", "t.csv"), 1, "NOT_FOUND")
    assert_one_line_error(cli.run("download", "tab", "missing.csv", "-o", str(out)), 1, "NOT_FOUND")


def test_reference_syntax_is_checked_before_any_call(cli: Cli) -> None:
    assert_one_line_error(cli.run("diff", "a@1", "b@2"), 2)
    assert_one_line_error(cli.run("preview", "a@", "x.csv"), 2)
    assert_one_line_error(cli.run("download", "@3", "x.csv"), 2)
    bad_namespace = Cli(cli.address, "Not Valid", cli.cache_dir)
    assert "QUARRY_NAMESPACE" in assert_one_line_error(bad_namespace.run("datasets", "ls"), 2)


COMMANDS = [
    ("datasets", "ls"), ("datasets", "create", "x"), ("datasets", "show", "x"), ("datasets", "rm", "x"),
    ("versions", "x"), ("ls", "x"), ("diff", "x@1", "x@2"), ("preview", "x", "a.csv"), ("download", "x", "a.csv"),
    ("upload", "FILE", "-d", "x"), ("upload", "DIR", "-d", "x"), ("uploads", "ls"), ("uploads", "show", "u"),
    ("uploads", "retry", "u"), ("uploads", "cancel", "u"), ("uploads", "watch", "u"),
]


@pytest.fixture
def down(tmp_path: Path) -> Iterator[Cli]:
    """The CLI pointed at a port where nothing listens, retrying for a second (not the default minute)."""
    yield Cli(f"127.0.0.1:{refused_port()}", new_namespace(), tmp_path / "cache", options=("--retry-for", "1"))


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_server_down_is_one_line_and_exit_3(down: Cli, tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "f.csv").write_text("a\n1\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "g.csv").write_text("a\n1\n")
    args = [str(tmp_path / "f.csv") if a == "FILE" else str(tmp_path / "d") if a == "DIR" else a for a in command]
    result = down.run(*args, "-o", str(tmp_path / "out")) if command[0] == "download" else down.run(*args)
    assert "cannot reach the server" in assert_one_line_error(result, 3, "UNAVAILABLE")


# What each command does, run in this order in a fresh namespace: exit 0, or one line with the exit code and the
# status. Dataset x is created, shown and deleted, so the version commands that follow find no x; the uploads
# then recreate it; "u" is not an upload's uid.
EXPECTED: dict[tuple[str, ...], tuple[int, str | None]] = {
    ("datasets", "ls"): (0, None), ("datasets", "create", "x"): (0, None), ("datasets", "show", "x"): (0, None),
    ("datasets", "rm", "x"): (0, None), ("versions", "x"): (1, "NOT_FOUND"), ("ls", "x"): (1, "NOT_FOUND"),
    ("diff", "x@1", "x@2"): (1, "NOT_FOUND"),
    ("preview", "x", "a.csv"): (1, "NOT_FOUND"), ("download", "x", "a.csv"): (1, "NOT_FOUND"),
    ("upload", "FILE", "-d", "x"): (0, None), ("upload", "DIR", "-d", "x"): (0, None), ("uploads", "ls"): (0, None),
    ("uploads", "show", "u"): (1, "INVALID_ARGUMENT"), ("uploads", "retry", "u"): (1, "INVALID_ARGUMENT"),
    ("uploads", "cancel", "u"): (1, "INVALID_ARGUMENT"), ("uploads", "watch", "u"): (1, "INVALID_ARGUMENT"),
}


def test_every_command_succeeds_or_answers_in_one_line(cli: Cli, tmp_path: Path) -> None:
    """Each command, with the outcome it must have: no traceback, and the right exit code and status."""
    assert set(EXPECTED) == set(COMMANDS)
    (tmp_path / "f.csv").write_text("a\n1\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "g.csv").write_text("a\n1\n")
    for command in COMMANDS:
        args = [str(tmp_path / "f.csv") if a == "FILE" else str(tmp_path / "d") if a == "DIR" else a for a in command]
        if command[0] == "download":
            args += ["-o", str(tmp_path / "out")]
        result = cli.run(*args)
        code, status = EXPECTED[command]
        if code == 0:
            assert (result.returncode, "Traceback" in result.stderr) == (0, False), (command, result.stderr)
        else:
            assert_one_line_error(result, code, status)
