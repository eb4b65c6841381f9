"""`quarry namespaces`, `quarry tokens` and `quarry audit`, and a second shell holding only a reader's token."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.sdk_support import Cli, assert_one_line_error
from tests.support import ROOT, ServerHandle, server_operator


def test_an_operator_makes_a_namespace_and_a_reader_shell_can_read_but_not_upload(
        server_file: ServerHandle, tmp_path: Path) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    operator = Cli(server_file.address, "default", tmp_path / "cache", token=server_operator(server_file.address))
    created = operator.json("namespaces", "create", team, "--max-datasets", "10", "--max-bytes", "1GB")
    assert created["name"] == f"namespaces/{team}" and created["quota"]["max_bytes"] == "1000000000"
    assert team in operator.run("namespaces", "ls").stdout
    changed = operator.json("namespaces", "set", team, "--requests-per-second", "500", "--max-open-uploads", "7")
    assert changed["quota"]["requests_per_second"] == 500 and int(changed["quota"]["max_datasets"]) == 10
    shown = operator.run("namespaces", "show", team)
    assert shown.returncode == 0 and "requests per second" in shown.stdout and "500" in shown.stdout
    writer = Cli(server_file.address, team, tmp_path / "cache", token=server_operator(server_file.address))
    assert writer.run("upload", str(ROOT / "examples" / "sales.csv"), "--dataset", "sales").returncode == 0

    issued = operator.run("tokens", "create", "--name", "viewer", "--grant", f"{team}=reader", "--expires", "1d")
    assert issued.returncode == 0, issued.stderr
    secret = issued.stdout.strip()
    assert secret.startswith("qk_") and "shown once" in issued.stderr and secret not in issued.stderr
    listed = operator.run("tokens", "ls", "--namespace", team)
    assert "viewer" in listed.stdout and f"{team}=reader" in listed.stdout and secret not in listed.stdout

    # A second shell with nothing but QUARRY_TOKEN (and where to act): it reads, it cannot upload.
    reader = Cli(server_file.address, team, tmp_path / "reader-cache", token=secret)
    assert [d["name"] for d in reader.json("datasets", "ls")] == [f"namespaces/{team}/datasets/sales"]
    refused = reader.run("upload", str(ROOT / "examples" / "sales.csv"), "--dataset", "sales")
    line = assert_one_line_error(refused, 1, "PERMISSION_DENIED")
    assert "writer role" in line
    assert "viewer" in operator.run("audit", "ls", "--namespace", team, "--principal", "viewer").stdout

    token_id = secret.split("_")[1]
    assert operator.run("tokens", "revoke", token_id).returncode == 0
    gone = reader.run("datasets", "ls")
    assert "TOKEN_REVOKED" in reader.run("datasets", "ls", "--json").stdout
    assert_one_line_error(gone, 1, "UNAUTHENTICATED")


def test_bad_identity_commands_say_why_in_one_line(server_file: ServerHandle, tmp_path: Path) -> None:
    operator = Cli(server_file.address, "default", tmp_path / "cache", token=server_operator(server_file.address))
    for args, words in ((("tokens", "create", "--grant", "default=reader"), "--name"),
                        (("tokens", "create", "--name", "x", "--grant", "default"), "NAMESPACE=ROLE"),
                        (("tokens", "create", "--name", "x", "--grant", "default=owner"), "invalid role"),
                        (("tokens", "create", "--name", "x", "--grant", "default=reader", "--expires", "soon"),
                         "invalid duration"),
                        (("namespaces", "create", "x", "--max-bytes", "lots"), "invalid size"),
                        (("namespaces", "set", "default"), "nothing to change")):
        line = assert_one_line_error(operator.run(*args), 2)
        assert words in line, line
    no_token = Cli(server_file.address, "default", tmp_path / "cache", token="")
    line = assert_one_line_error(no_token.run("namespaces", "ls"), 1, "UNAUTHENTICATED")
    assert "authorization" in line
    bad = Cli(server_file.address, "default", tmp_path / "cache", token="", extra_env={"QUARRY_TOKEN": "hunter2"})
    line = assert_one_line_error(bad.run("datasets", "ls"), 2)
    assert "QUARRY_TOKEN does not hold a Quarry token" in line and "hunter2" not in line
