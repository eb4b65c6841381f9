"""Directory uploads: which files (gitignore rules), what the manifest adds, and one version for all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import quarry
from quarry.v1 import upload_pb2

from tests.conftest import Env


def make_tree(root: Path) -> Path:
    """A directory with data, ignored files, a .gitignore and a manifest."""
    (root / "b").mkdir(parents=True)
    (root / "build").mkdir()
    (root / ".git").mkdir()
    (root / "a.csv").write_text("x,y\n1,2\n")
    (root / "b" / "c.jsonl").write_text('{"x": 1}\n')
    (root / "b" / "d.log").write_text("noise\n")
    (root / "build" / "out.bin").write_bytes(b"\0" * 10)
    (root / "notes.tmp").write_text("scratch")
    (root / "keep.tmp").write_text("kept by a negated pattern")
    (root / ".git" / "HEAD").write_text("ref")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "manifest.yaml").write_text(
        "message: First drop\n"
        "files:\n"
        "  a.csv: Points of the first survey\n"
        "  b/c.jsonl:\n"
        "    description: Raw events\n"
        "    content_type: application/x-ndjson\n")
    return root


def test_selection_honours_ignore_rules_and_the_manifest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    manifest = quarry.load_manifest(root / "manifest.yaml")
    chosen = quarry.select_files(root, ignore=["*.tmp", "!keep.tmp"], manifest=manifest,
                                 manifest_path=root / "manifest.yaml")
    assert [f.dest for f in chosen.files] == ["a.csv", "b/c.jsonl", "keep.tmp"]
    assert chosen.ignored == [".git/", ".gitignore", "b/d.log", "build/", "manifest.yaml", "notes.tmp"]
    described = {f.dest: (f.description, f.content_type) for f in chosen.files}
    assert described["b/c.jsonl"] == ("Raw events", "application/x-ndjson")
    assert chosen.message == "First drop\n\na.csv: Points of the first survey\nb/c.jsonl: Raw events"
    # Without the directory's .gitignore, its patterns do not apply; a prefix moves every path.
    bare = quarry.select_files(root, ignore=["*.tmp", "manifest.yaml"], use_gitignore=False, prefix="drop/1")
    assert [f.dest for f in bare.files] == ["drop/1/a.csv", "drop/1/b/c.jsonl", "drop/1/b/d.log",
                                            "drop/1/build/out.bin"]


def test_json_manifest_and_bad_manifests(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    good = tmp_path / "m.json"
    good.write_text(json.dumps({"a.csv": "A", "b/c.jsonl": {"description": "C"}}))
    chosen = quarry.select_files(root, ignore=["*.tmp", "manifest.yaml"], manifest=quarry.load_manifest(good))
    assert {f.dest: f.description for f in chosen.files} == {"a.csv": "A", "b/c.jsonl": "C"}
    assert chosen.message.endswith("a.csv: A\nb/c.jsonl: C")
    cases = {"list.json": "[1, 2]", "broken.yaml": "a: [", "escape.json": '{"../x": "no"}',
             "kind.json": '{"a.csv": 3}'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(quarry.UsageError):
            quarry.load_manifest(tmp_path / name)
    with pytest.raises(quarry.UsageError, match="missing.csv"):
        quarry.select_files(root, manifest=quarry.Manifest(descriptions={"missing.csv": "?"}))
    with pytest.raises(quarry.UsageError, match="no files"):
        quarry.select_files(root, ignore=["*"])
    with pytest.raises(quarry.UsageError, match="not a directory"):
        quarry.select_files(root / "a.csv")


async def test_directory_upload_stages_the_selected_files(env: Env, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    options = {"ignore": ["*.tmp"], "manifest": root / "manifest.yaml"}
    with quarry.Client(env.server.address, namespace=env.namespace, token=env.api.token,
                       cache_dir=tmp_path / "cache") as client:
        result = client.upload_dir(root, "survey", **options)  # type: ignore[arg-type]
        uploads = list(client.list_uploads(dataset="survey"))
        assert sorted(u.path for u in uploads) == ["a.csv", "b/c.jsonl"]
        assert all(u.state != upload_pb2.UPLOAD_STATE_OPEN for u in uploads)
        assert {u.path: u.content_type for u in uploads}["b/c.jsonl"] == "application/x-ndjson"
        assert result.version is not None and len(result.files) == 2


async def test_directory_upload_is_one_version(env: Env, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    with quarry.Client(env.server.address, namespace=env.namespace, token=env.api.token,
                       cache_dir=tmp_path / "cache") as client:
        result = client.upload_dir(root, "survey", ignore=["*.tmp"], manifest=root / "manifest.yaml")
        assert result.version.message == "First drop\n\na.csv: Points of the first survey\nb/c.jsonl: Raw events"
        assert sorted(f.upload.path for f in result.files) == ["a.csv", "b/c.jsonl"]
        versions = list(client.list_versions("survey"))
        assert len(versions) == 1 and versions[0].uid == result.version.uid


def test_links_that_leave_the_directory_are_refused_unless_allowed(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not for upload")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.csv").write_text("a\n1\n")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_text("a\n1\n")
    (root / "sub" / "b.csv").write_text("b\n2\n")
    (root / "inside.csv").symlink_to(root / "a.csv")  # stays in the directory: followed
    (root / "sub-again").symlink_to(root / "sub")
    (root / "loop").symlink_to(root)  # back to the top: not walked twice
    assert [f.dest for f in quarry.select_files(root).files] == ["a.csv", "inside.csv", "sub-again/b.csv", "sub/b.csv"]
    (root / "leak.txt").symlink_to(outside)
    with pytest.raises(quarry.UsageError, match=r"leak.txt is a symbolic link to .*secret.txt, outside"):
        quarry.select_files(root)
    assert "leak.txt" in quarry.select_files(root, ignore=["leak.txt"]).ignored
    assert "leak.txt" in [f.dest for f in quarry.select_files(root, follow_symlinks=True).files]
    (root / "leak.txt").unlink()
    (root / "far").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(quarry.UsageError, match="far/ is a symbolic link"):
        quarry.select_files(root)
    assert "far/x.csv" in [f.dest for f in quarry.select_files(root, follow_symlinks=True).files]
