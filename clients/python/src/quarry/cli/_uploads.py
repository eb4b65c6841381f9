"""`quarry upload FILE|DIR`, and `quarry uploads ls|show|watch|retry|cancel`."""

from __future__ import annotations

import json as jsonlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from quarry import Client, ProgressCallback, UsageError
from quarry.cli._options import JsonOpt, session_of
from quarry.cli._output import Output, enum_name, run, size, timestamp, to_dict

__all__ = ["register"]


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr (bytes, rate, time left), or None when it would not be seen."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def show_progress(flag: bool | None, json: bool) -> bool:
    """--progress/--no-progress, else on when stderr is a terminal and the output is not JSON."""
    return flag if flag is not None else (not json and sys.stderr.isatty())


def _upload_row(upload: Any) -> list[Any]:
    state = enum_name(upload, "state", "UPLOAD_STATE_")
    amount = upload.size_bytes or upload.committed_bytes
    declared = upload.declared_size_bytes if upload.HasField("declared_size_bytes") else 0
    shown = size(amount) if state != "OPEN" else f"{size(amount)} of {size(declared) if declared else '?'}"
    failure = f"{upload.failure.reason}: {upload.failure.message}" if upload.failure.reason else ""
    return [upload.uid, upload.dataset, upload.path, state, shown, timestamp(upload.create_time), failure]


UPLOAD_COLUMNS = ["ID", "DATASET", "PATH", "STATE", "SIZE", "CREATED", "FAILURE"]

ProgressOpt = Annotated[bool | None, typer.Option("--progress/--no-progress", show_default=False,
                                                  help="Show a progress bar (default: when stderr is a terminal).")]


def register(app: typer.Typer) -> None:
    """Add the upload commands."""

    @app.command(rich_help_panel="Uploads")
    def upload(ctx: typer.Context,
               source: Annotated[Path, typer.Argument(help="A file, or a directory (uploaded as one version).")],
               dataset: Annotated[str, typer.Option("--dataset", "-d", help="Target dataset.")],
               path: Annotated[str | None, typer.Option(
                   "--path", "-p", help="Path in the dataset (default: the file's name); a prefix for a directory.")]
               = None,
               wait: Annotated[bool, typer.Option(help="Wait until the file is in a READY version.")] = False,
               ignore: Annotated[list[str] | None, typer.Option(
                   "--ignore", "-i", help="gitignore pattern to leave out of a directory (repeatable).")] = None,
               manifest: Annotated[Path | None, typer.Option(
                   help="JSON/YAML file of per-file descriptions for a directory.")] = None,
               message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
               content_type: Annotated[str, typer.Option(help="Media type of a file.")] = "",
               streams: Annotated[int, typer.Option(min=1, max=32, help="Parallel streams.")] = 4,
               follow_symlinks: Annotated[bool, typer.Option(
                   "--follow-symlinks", help="Follow symbolic links that lead out of a directory (refused by "
                                             "default).")] = False,
               wait_timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 3600.0,
               json: JsonOpt = False, progress: ProgressOpt = None) -> None:
        """Upload a file (resuming an interrupted earlier upload of it) or a directory."""
        out = Output(json)

        def command(client: Client) -> None:
            client.streams = streams
            if source.is_dir():
                with progress_bar(show_progress(progress, json), source.name) as callback:
                    batch = client.upload_dir(source, dataset, prefix=path or "", ignore=ignore or (),
                                               manifest=manifest, message=message, wait=wait, progress=callback,
                                               wait_timeout=wait_timeout, follow_symlinks=follow_symlinks)
                if json:
                    out.data(batch.to_dict())
                    return
                out.table(["FILE", "UPLOAD", "SIZE", "SENT", "RESUMED"],
                          [[f.upload.path, f.upload.uid, size(f.size), size(f.bytes_sent), size(f.bytes_skipped)]
                           for f in batch.files])
                # NAME@NUMBER once READY (what the other commands take), NAME@UID before: the canonical name is
                # by uid and long.
                ref = batch.version.number or batch.version.uid
                out.note(f"{len(batch.files)} files ({len(batch.ignored)} ignored) in version "
                         f"{dataset}@{ref} ({enum_name(batch.version, 'state', 'VERSION_STATE_')})")
                return
            if not source.is_file():
                raise UsageError(f"{source}: no such file or directory")
            if ignore or manifest:
                raise UsageError("--ignore and --manifest apply to directory uploads only")
            with progress_bar(show_progress(progress, json), source.name) as callback:
                result = client.upload_file(source, dataset, path, wait=wait, progress=callback,
                                            content_type=content_type, commit_message=message or "",
                                            wait_timeout=wait_timeout)
            if json:
                out.data(result.to_dict())
                return
            state = enum_name(result.upload, "state", "UPLOAD_STATE_")
            resumed = f", {size(result.bytes_skipped)} already there" if result.bytes_skipped else ""
            out.note(f"uploaded {source} to {result.upload.dataset}/{result.upload.path}: upload {result.upload.uid}"
                     f" {state} ({size(result.bytes_sent)} sent{resumed})")

        run(session_of(ctx), out, command)

    uploads = typer.Typer(help="List, follow, retry and cancel uploads.", no_args_is_help=True)
    app.add_typer(uploads, name="uploads", rich_help_panel="Uploads")

    @uploads.command("ls")
    def ls(ctx: typer.Context, json: JsonOpt = False,
           state: Annotated[str | None, typer.Option(help="open, staged, validating, validated, promoted, failed, "
                                                          "cancelled or expired")] = None,
           dataset: Annotated[str | None, typer.Option("--dataset", "-d")] = None,
           limit: Annotated[int, typer.Option(help="Most uploads to list (0: all).")] = 100) -> None:
        """List uploads, newest first (e.g. the failed ones: --state failed)."""
        out = Output(json)

        def command(client: Client) -> None:
            found = []
            for item in client.list_uploads(state=state, dataset=dataset):
                found.append(item)
                if limit and len(found) >= limit:
                    break
            if json:
                out.data([to_dict(u) for u in found])
            else:
                out.table(UPLOAD_COLUMNS, [_upload_row(u) for u in found], empty="no uploads")

        run(session_of(ctx), out, command)

    @uploads.command("show")
    def show(ctx: typer.Context, upload_id: Annotated[str, typer.Argument(metavar="ID")],
             json: JsonOpt = False) -> None:
        """Show one upload."""
        _one(ctx, json, lambda client: client.get_upload(upload_id))

    @uploads.command("retry")
    def retry(ctx: typer.Context, upload_id: Annotated[str, typer.Argument(metavar="ID")],
              json: JsonOpt = False) -> None:
        """Run a FAILED upload's validation or promotion again."""
        _one(ctx, json, lambda client: client.retry_upload(upload_id))

    @uploads.command("cancel")
    def cancel(ctx: typer.Context, upload_id: Annotated[str, typer.Argument(metavar="ID")],
               json: JsonOpt = False) -> None:
        """Cancel an upload and delete its bytes."""
        _one(ctx, json, lambda client: client.cancel_upload(upload_id))

    @uploads.command("watch")
    def watch(ctx: typer.Context, upload_id: Annotated[str, typer.Argument(metavar="ID")], json: JsonOpt = False,
              timeout: Annotated[float, typer.Option(help="Seconds to follow at most.")] = 3600.0) -> None:
        """Print the upload's state at every change until it ends."""
        out = Output(json)

        def command(client: Client) -> None:
            for update in client.watch_upload(upload_id, timeout=timeout):
                if json:
                    print(jsonlib.dumps(to_dict(update)), flush=True)  # one JSON object per line
                else:
                    out.note(f"{timestamp(update.update_time)}  {enum_name(update, 'state', 'UPLOAD_STATE_')}")

        run(session_of(ctx), out, command)


def _one(ctx: typer.Context, json: bool, call: Any) -> None:
    out = Output(json)

    def command(client: Client) -> None:
        upload = call(client)
        if json:
            out.data(to_dict(upload))
        else:
            out.table(UPLOAD_COLUMNS, [_upload_row(upload)])

    run(session_of(ctx), out, command)
