"""Which files of a directory an upload takes, and what the manifest says about them.

Ignore rules are gitignore patterns (via `pathspec`): the caller's, then the directory's own
`.gitignore`. `.git/`, the `.gitignore` itself and a manifest inside the directory are never uploaded.

Symbolic links are followed while they stay inside the directory. One that leads out of it (to /etc/passwd,
to a home directory) is refused, naming it, unless the caller allows it (`follow_symlinks=True`,
`--follow-symlinks`) or ignores it: an upload takes what is in the directory, never what a link reaches.

A manifest is a JSON or YAML mapping:

    message: Quarterly sales          # optional commit message
    files:
      sales/2024.csv: Sales of 2024   # a description
      sales/2025.csv:
        description: Sales of 2025
        content_type: text/csv

(or just the `files` mapping at the top level). The contract has no per-file description field, so the
descriptions go into the version's commit message, one `path: description` line per file; a content type
goes into the upload's `content_type`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from quarry._exceptions import UsageError

__all__ = ["DirectoryFile", "Manifest", "Selection", "load_manifest", "select_files"]

ALWAYS_IGNORED = (".git/", "/.gitignore")


@dataclass(frozen=True)
class DirectoryFile:
    """One file to upload: where it is, its path in the version, and what the manifest says of it."""

    path: Path
    dest: str
    size: int
    description: str = ""
    content_type: str = ""


@dataclass
class Manifest:
    """Per-file descriptions and content types, and an optional commit message."""

    message: str = ""
    descriptions: dict[str, str] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)


@dataclass
class Selection:
    """The files a directory upload takes (sorted by path), the ones it ignored, and the commit message."""

    files: list[DirectoryFile]
    ignored: list[str]
    message: str


def _parse(text: str, suffix: str) -> Any:
    if suffix == ".json":
        return json.loads(text)
    import yaml  # YAML is a superset of JSON, so it reads both

    return yaml.safe_load(text)


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a JSON or YAML manifest; UsageError when it is not one."""
    file = Path(path)
    try:
        data = _parse(file.read_text(encoding="utf-8"), file.suffix.lower())
    except OSError as exc:
        raise UsageError(f"manifest {file}: {exc.strerror or exc}") from exc
    except Exception as exc:  # json and yaml each have their own error types
        raise UsageError(f"manifest {file} is not valid JSON or YAML: {_where(exc)}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"manifest {file}: expected a mapping of file paths")
    entries = data.get("files", data if "message" not in data else {})
    if not isinstance(entries, dict):
        raise UsageError(f"manifest {file}: `files` must map paths to descriptions")
    manifest = Manifest(message=str(data.get("message") or ""))
    for key, value in entries.items():
        name = _normal(str(key), f"manifest {file}")
        if isinstance(value, str):
            manifest.descriptions[name] = value
        elif isinstance(value, dict):
            manifest.descriptions[name] = str(value.get("description") or "")
            if value.get("content_type"):
                manifest.content_types[name] = str(value["content_type"])
        elif value is not None:
            raise UsageError(f"manifest {file}: entry {key!r} must be a description or a mapping")
    return manifest


def _where(exc: Exception) -> str:
    """A parse error in one line: what went wrong, and where."""
    mark = getattr(exc, "problem_mark", None)  # yaml's MarkedYAMLError
    if mark is not None:
        return f"{getattr(exc, 'problem', exc)} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return " ".join(str(exc).split())


def _normal(path: str, where: str) -> str:
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise UsageError(f"{where}: {path!r} is not a relative path inside the directory")
    return pure.as_posix()


def _spec(root: Path, ignore: Iterable[str], use_gitignore: bool) -> Any:
    import pathspec

    lines = [*ALWAYS_IGNORED, *ignore]
    gitignore = root / ".gitignore"
    if use_gitignore and gitignore.is_file():
        lines += gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _outside(path: Path, real_root: Path, relative: str, follow_symlinks: bool) -> bool:
    """Whether `path` is a link out of the directory that may be followed; UsageError when it may not."""
    if not path.is_symlink():
        return False
    target = path.resolve()
    if target == real_root or real_root in target.parents:
        return False
    if not follow_symlinks:
        raise UsageError(f"{relative} is a symbolic link to {target}, outside the directory: ignore it, or allow "
                         "links that leave the directory (follow_symlinks=True, --follow-symlinks)")
    return True


def select_files(root: str | os.PathLike[str], *, ignore: Iterable[str] = (), manifest: Manifest | None = None,
                 manifest_path: str | os.PathLike[str] | None = None, prefix: str = "",
                 use_gitignore: bool = True, follow_symlinks: bool = False) -> Selection:
    """The files under `root` that are not ignored, with their destination paths and manifest entries (links that
    leave `root` refused unless `follow_symlinks`)."""
    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"{base}: not a directory")
    real_root = base.resolve()
    visited = {real_root}
    spec = _spec(base, ignore, use_gitignore)
    skip = Path(manifest_path).resolve() if manifest_path else None
    prefix = _normal(prefix, "--path") + "/" if prefix.strip("/") else ""
    manifest = manifest or Manifest()
    files: list[DirectoryFile] = []
    ignored: list[str] = []
    for current, dirs, names in os.walk(base, followlinks=True):
        relative_dir = Path(current).relative_to(base).as_posix()
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        for name in list(dirs):
            path = Path(current) / name
            if spec.match_file(relative_dir + name + "/"):
                ignored.append(relative_dir + name + "/")
                dirs.remove(name)  # gitignore: nothing inside an ignored directory comes back
            elif path.is_symlink():
                _outside(path, real_root, relative_dir + name + "/", follow_symlinks)
                if path.resolve() in visited:
                    dirs.remove(name)  # a link back into what is walked already: a loop
                else:
                    visited.add(path.resolve())
        dirs.sort()
        for name in sorted(names):
            relative = relative_dir + name
            path = Path(current) / name
            if spec.match_file(relative) or (skip is not None and path.resolve() == skip):
                ignored.append(relative)
            elif path.is_file():
                _outside(path, real_root, relative, follow_symlinks)  # refuses a link out, unless allowed
                files.append(DirectoryFile(path, prefix + relative, path.stat().st_size,
                                           manifest.descriptions.get(relative, ""),
                                           manifest.content_types.get(relative, "")))
    chosen = {f.dest.removeprefix(prefix) for f in files}
    unknown = sorted(set(manifest.descriptions) - chosen)
    if unknown:
        raise UsageError(f"the manifest describes files that are not uploaded (missing or ignored): "
                         f"{', '.join(unknown)}")
    if not files:
        raise UsageError(f"{base}: no files to upload (all ignored, or the directory is empty)")
    files.sort(key=lambda f: f.dest)
    return Selection(files, sorted(ignored), commit_message(manifest.message or f"upload of {base.name or base}",
                                                            files))


def commit_message(message: str, files: Iterable[DirectoryFile]) -> str:
    """The commit message: the message, then one `path: description` line per described file."""
    lines = [f"{f.dest}: {f.description}" for f in files if f.description]
    return message + ("\n\n" + "\n".join(lines) if lines else "")
