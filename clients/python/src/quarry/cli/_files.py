"""`quarry ls NAME[@V] [PREFIX]`, `quarry preview|stats NAME[@V] PATH`, `quarry put NAME PATH --text …|-` and
`quarry download NAME[@V] [PATH] -o OUT`."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from quarry import Client, UsageError, parse_ref
from quarry.cli._options import JsonOpt, session_of
from quarry.cli._output import Output, enum_name, reported, run, size, to_dict
from quarry.cli._uploads import ProgressOpt, progress_bar, show_progress

__all__ = ["register"]


def _number(value: float) -> str:
    return f"{value:.6g}"


def register(app: typer.Typer) -> None:
    """Add the file commands."""

    @app.command("ls", rich_help_panel="Files")
    def list_files(ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]")],
                   prefix: Annotated[str, typer.Argument(help="Only paths starting with this.")] = "",
                   format: Annotated[list[str] | None, typer.Option(
                       "--format", "-f", help="Only files of this format: csv, jsonl, parquet, text, binary "
                                              "(repeatable).")] = None,
                   json: JsonOpt = False) -> None:
        """List the files of a version (all of them, page by page), optionally under a prefix."""
        out = Output(json)
        with reported(out):
            target = parse_ref(ref)

        def command(client: Client) -> None:
            found = list(client.list_version_files(target.dataset, target.version, prefix=prefix,
                                                   formats=format or (), page_size=1000))
            if json:
                out.data([to_dict(f) for f in found])
                return
            rows = []
            for f in found:
                rows.append([f.path, enum_name(f, "format", "FILE_FORMAT_"), size(f.size_bytes),
                             f.row_count if f.row_count else "", f.sha256[:12]])
                if f.HasField("rendition"):  # the Parquet rendition Quarry made of it (normalize_to_parquet)
                    rows.append([f"  └ {f.path} (rendition)", enum_name(f.rendition, "format", "FILE_FORMAT_"),
                                 size(f.rendition.size_bytes), f.row_count if f.row_count else "",
                                 f.rendition.sha256[:12]])
            out.table(["PATH", "FORMAT", "SIZE", "ROWS", "SHA256"], rows, empty="no files")
            out.note(f"{len(found)} files")

        run(session_of(ctx), out, command)

    @app.command(rich_help_panel="Files")
    def preview(ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]")],
                path: Annotated[str, typer.Argument(help="Path of the file in the version.")],
                rows: Annotated[int, typer.Option("--rows", "-r", help="Rows to show (0: the server's default).")]
                = 20, json: JsonOpt = False) -> None:
        """Show the first rows of a tabular file."""
        out = Output(json)
        with reported(out):
            target = parse_ref(ref)

        def command(client: Client) -> None:
            answer = client.preview_file(target.dataset, path, version=target.version, row_limit=rows)
            records = [jsonlib.loads(row) for row in answer.json_rows]
            if json:
                out.data({"columns": [to_dict(c) for c in answer.columns], "rows": records,
                          "row_count": answer.row_count, "total_rows": answer.total_rows})
                return
            names = [c.name for c in answer.columns]
            out.table([f"{c.name}\n{c.type}" for c in answer.columns],
                      [["" if r.get(n) is None else r.get(n) for n in names] for r in records], empty="no rows")
            out.note(f"{answer.row_count} of {answer.total_rows} rows")

        run(session_of(ctx), out, command)

    @app.command(rich_help_panel="Files")
    def stats(ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]")],
              path: Annotated[str, typer.Argument(help="Path of the file in the version.")],
              json: JsonOpt = False) -> None:
        """Show the column statistics of a tabular file (computed when it was validated)."""
        out = Output(json)
        with reported(out):
            target = parse_ref(ref)

        def command(client: Client) -> None:
            answer = client.get_file_stats(target.dataset, path, version=target.version)
            if json:
                out.data(to_dict(answer))
                return
            rows = []
            for column in answer.columns:
                median = next((q.value for q in column.quantiles if q.probability == 0.5), None)
                distinct = f"{column.distinct_estimate}" if column.distinct_exact else f"~{column.distinct_estimate}"
                rows.append([column.name, column.type, column.count, column.null_count, column.min, column.max,
                             _number(column.mean) if column.HasField("mean") else "",
                             _number(column.stddev) if column.HasField("stddev") else "",
                             "" if median is None else _number(median), distinct,
                             ", ".join(f"{t.value} ({t.count})" for t in column.top_values[:3])])
            out.table(["COLUMN", "TYPE", "COUNT", "NULLS", "MIN", "MAX", "MEAN", "STDDEV", "MEDIAN", "DISTINCT",
                       "TOP VALUES"], rows, empty="no columns")
            out.note(f"{answer.row_count} rows; --json adds quantiles, top values and histograms")

        run(session_of(ctx), out, command)

    @app.command(rich_help_panel="Files")
    def put(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The dataset.")],
            path: Annotated[str, typer.Argument(help="Path of the file in the new version.")],
            source: Annotated[str | None, typer.Argument(metavar="[-]", help="- reads the content from standard "
                                                                              "input.")] = None,
            text: Annotated[str | None, typer.Option("--text", "-t", help="The content.")] = None,
            message: Annotated[str, typer.Option("--message", "-m", help="Commit message.")] = "",
            content_type: Annotated[str, typer.Option("--content-type", help="Media type, e.g. text/csv.")] = "",
            json: JsonOpt = False) -> None:
        """Write a small file (a config, JSON, notes) kept inline, and commit it as a new version in one call."""
        out = Output(json)
        with reported(out):
            if (text is None) == (source is None):
                raise UsageError("give the content either with --text TEXT or as - (standard input)")
            if source is not None and source != "-":
                raise UsageError(f"unexpected argument {source!r}: only - (standard input) may follow PATH; upload "
                                 "a file with `quarry upload`")
            content = text.encode() if text is not None else sys.stdin.buffer.read()

        def command(client: Client) -> None:
            version = client.write_file(name, path, content, content_type=content_type, message=message)
            if json:
                out.data(to_dict(version))
            else:
                out.note(f"wrote {path} ({size(len(content))}, inline) as version {version.number} of {name}")

        run(session_of(ctx), out, command)

    @app.command(rich_help_panel="Files")
    def register(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The dataset.")],
                 source: Annotated[str, typer.Argument(metavar="URI", help="s3://bucket/prefix, or file:///dir under "
                                                                           "the server's register roots.")],
                 include: Annotated[list[str] | None, typer.Option(
                     "--include", "-i", help="Only objects matching this glob (repeatable).")] = None,
                 exclude: Annotated[list[str] | None, typer.Option(
                     "--exclude", "-x", help="Leave out objects matching this glob (repeatable).")] = None,
                 copy: Annotated[bool, typer.Option("--copy", help="Copy the objects into Quarry's store instead of "
                                                                    "pointing at them.")] = False,
                 prefix: Annotated[str, typer.Option("--prefix", help="Folder in the version to put them under.")]
                 = "",
                 message: Annotated[str, typer.Option("--message", "-m", help="Commit message.")] = "",
                 wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the version is READY.")]
                 = True,
                 json: JsonOpt = False) -> None:
        """Register files that already exist (an S3 prefix, a server-side directory) as a new version, without
        uploading them."""
        out = Output(json)

        def command(client: Client) -> None:
            version = client.register_files(name, source, include=include or (), exclude=exclude or (), copy=copy,
                                            path_prefix=prefix, message=message, wait=wait)
            if json:
                out.data(to_dict(version))
            elif wait:
                out.note(f"registered {version.file_count} files ({size(version.total_bytes)}) from {source} as "
                         f"version {version.number} of {name}")
            else:
                out.note(f"registering {source} as {version.name} (PENDING)")

        run(session_of(ctx), out, command)

    @app.command(rich_help_panel="Files")
    def download(ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]")],
                 path: Annotated[str | None, typer.Argument(
                     help="Path of one file in the version; without it, the whole version.")] = None,
                 output: Annotated[Path | None, typer.Option(
                     "--output", "-o", help="Where to write: a file (default: its name, here), or with no PATH a "
                                            "directory (default: the dataset's name, here).")] = None,
                 include: Annotated[list[str] | None, typer.Option(
                     "--include", "-i", help="Only paths matching this glob, e.g. 'parts/*.parquet' (repeatable; "
                                             "whole version only).")] = None,
                 exclude: Annotated[list[str] | None, typer.Option(
                     "--exclude", "-x", help="Leave out paths matching this glob (repeatable).")] = None,
                 parallel: Annotated[int, typer.Option(min=1, max=64, help="Ranges fetched at once.")] = 4,
                 json: JsonOpt = False, progress: ProgressOpt = None) -> None:
        """Download a file, or a whole version into a directory: resumable, sha256-verified, files already there
        skipped."""
        out = Output(json)
        with reported(out):
            target = parse_ref(ref)
            if path is not None and (include or exclude):
                raise UsageError("--include and --exclude apply to whole-version downloads (no PATH)")

        def command(client: Client) -> None:
            if path is None:
                directory = output or Path(target.dataset)
                with progress_bar(show_progress(progress, json), directory.name) as callback:
                    whole = client.download_version(target.dataset, directory, version=target.version,
                                                    include=include or (), exclude=exclude or (), progress=callback,
                                                    parallel=parallel)
                if json:
                    out.data(whole.to_dict())
                else:
                    out.note(f"downloaded {len(whole.files)} files of {whole.version} to {directory} "
                             f"({size(whole.bytes_received)} fetched, {len(whole.skipped)} already there)")
                return
            destination = output or Path(path.rsplit("/", 1)[-1])
            with progress_bar(show_progress(progress, json), destination.name) as callback:
                result = client.download(target.dataset, path, destination, version=target.version,
                                         progress=callback)
            if json:
                out.data(result.to_dict())
            else:
                kept = f", {size(result.bytes_resumed)} kept from an earlier try" if result.bytes_resumed else ""
                out.note(f"downloaded {path} to {result.path} ({size(result.size)}, sha256 {result.sha256}{kept})")

        run(session_of(ctx), out, command)
