"""`quarry datasets ls|create|show|rm|clone|undelete`, `quarry versions NAME`, `quarry diff NAME@A NAME@B`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from quarry import Client, UsageError, parse_ref
from quarry.cli._options import JsonOpt, session_of
from quarry.cli._output import Output, enum_name, reported, run, size, timestamp, to_dict

__all__ = ["register"]


def _dataset_row(dataset: Any) -> list[Any]:
    return [dataset.name.rsplit("/", 1)[-1], enum_name(dataset, "state", "DATASET_STATE_"),
            dataset.current_version_number or "-", dataset.description, timestamp(dataset.update_time)]


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def register(app: typer.Typer) -> None:
    """Add the dataset and version commands."""
    datasets = typer.Typer(help="Create, list, show, delete, clone and undelete datasets.", no_args_is_help=True)
    app.add_typer(datasets, name="datasets", rich_help_panel="Datasets")

    @datasets.command("ls")
    def ls(ctx: typer.Context, json: JsonOpt = False,
           filter: Annotated[str, typer.Option(help='e.g. `state = ACTIVE`, `labels.team = "x"`, `name = "s*"`')] = "",
           all: Annotated[bool, typer.Option("--all", help="Include deleted datasets.")] = False) -> None:
        """List the namespace's datasets."""
        out = Output(json)

        def command(client: Client) -> None:
            found = list(client.list_datasets(filter=filter, show_deleted=all))
            if json:
                out.data([to_dict(d) for d in found])
            else:
                out.table(["NAME", "STATE", "VERSION", "DESCRIPTION", "UPDATED"], [_dataset_row(d) for d in found],
                          empty="no datasets")

        run(session_of(ctx), out, command)

    @datasets.command("create")
    def create(ctx: typer.Context, name: str, json: JsonOpt = False,
               description: Annotated[str, typer.Option("--description", "-d")] = "",
               label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE (repeatable)")] = None,
               ) -> None:
        """Create a dataset."""
        out = Output(json)

        def command(client: Client) -> None:
            dataset = client.create_dataset(name, description=description, labels=_labels(label or []))
            if json:
                out.data(to_dict(dataset))
            else:
                out.note(f"created {dataset.name}")

        run(session_of(ctx), out, command)

    @datasets.command("show")
    def show(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
        """Show one dataset."""
        out = Output(json)

        def command(client: Client) -> None:
            dataset = client.get_dataset(name)
            if json:
                out.data(to_dict(dataset))
                return
            out.fields([("name", dataset.name), ("state", enum_name(dataset, "state", "DATASET_STATE_")),
                        ("description", dataset.description),
                        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(dataset.labels.items()))),
                        ("current version", dataset.current_version or "-"),
                        ("created", timestamp(dataset.create_time)), ("updated", timestamp(dataset.update_time)),
                        ("etag", dataset.etag)])

        run(session_of(ctx), out, command)

    @datasets.command("rm")
    def rm(ctx: typer.Context, name: str, json: JsonOpt = False,
           etag: Annotated[str, typer.Option(help="Only if the dataset still has this etag.")] = "") -> None:
        """Delete a dataset (soft: its name can be reused)."""
        out = Output(json)

        def command(client: Client) -> None:
            dataset = client.delete_dataset(name, etag=etag)
            if json:
                out.data(to_dict(dataset))
            else:
                out.note(f"deleted {dataset.name}")

        run(session_of(ctx), out, command)

    @datasets.command("clone")
    def clone(ctx: typer.Context, source: Annotated[str, typer.Argument(metavar="SRC[@VERSION]")],
              name: Annotated[str, typer.Argument(metavar="NEW", help="Name of the new dataset.")],
              json: JsonOpt = False,
              message: Annotated[str, typer.Option("--message", "-m", help="Message of the clone's version 1.")]
              = "") -> None:
        """Clone a dataset's version into a new dataset (metadata only: no bytes are copied)."""
        out = Output(json)
        with reported(out):
            ref = parse_ref(source)

        def command(client: Client) -> None:
            answer = client.clone_dataset(ref.dataset, name, version=ref.version, message=message)
            if json:
                out.data(to_dict(answer))
            else:
                version = answer.version
                out.note(f"cloned {version.cloned_from} to {answer.dataset.name} (version 1: {version.file_count} "
                         f"files, {size(version.total_bytes)})")

        run(session_of(ctx), out, command)

    @datasets.command("undelete")
    def undelete(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
        """Restore a deleted dataset, with its versions, within the server's retention period."""
        out = Output(json)

        def command(client: Client) -> None:
            dataset = client.undelete_dataset(name)
            if json:
                out.data(to_dict(dataset))
            else:
                out.note(f"restored {dataset.name} ({enum_name(dataset, 'state', 'DATASET_STATE_')}, version "
                         f"{dataset.current_version_number or '-'})")

        run(session_of(ctx), out, command)

    @app.command(rich_help_panel="Datasets")
    def versions(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
        """List the versions of a dataset, newest first."""
        out = Output(json)

        def command(client: Client) -> None:
            found = list(client.list_versions(name))
            if json:
                out.data([to_dict(v) for v in found])
                return
            out.table(["VERSION", "STATE", "FILES", "SIZE", "ROWS", "CREATED", "MESSAGE"],
                      [[v.number or v.uid, enum_name(v, "state", "VERSION_STATE_"), v.file_count, size(v.total_bytes),
                        v.total_rows, timestamp(v.create_time), v.message.split("\n", 1)[0]] for v in found],
                      empty="no versions")

        run(session_of(ctx), out, command)

    @app.command(rich_help_panel="Datasets")
    def diff(ctx: typer.Context, base: Annotated[str, typer.Argument(help="NAME@VERSION")],
             target: Annotated[str, typer.Argument(help="NAME@VERSION (default: NAME@latest)")] = "",
             rows: Annotated[str, typer.Option(help="compare the rows of this tabular file instead of the files")]
             = "",
             key: Annotated[list[str] | None, typer.Option(help="a key column of --rows (repeat for several)")]
             = None,
             json: JsonOpt = False) -> None:
        """Show the files added, removed and changed between two versions of a dataset, or with --rows PATH --key
        COLUMN the rows of one table, matched by key."""
        out = Output(json)
        with reported(out):
            old = parse_ref(base)
            new = parse_ref(target or old.dataset)
            if old.dataset != new.dataset:
                raise UsageError(f"cannot diff versions of two datasets: {old.dataset} and {new.dataset}")
            if bool(rows) != bool(key):
                raise UsageError("--rows PATH and --key COLUMN go together")

        def row_command(client: Client) -> None:
            answer = client.diff_rows(old.dataset, rows, old.version, new.version, keys=key or [])
            if json:
                out.data(to_dict(answer))
                return
            samples = [["ADDED", row, ""] for row in answer.added_rows]
            samples += [["REMOVED", row, ""] for row in answer.removed_rows]
            samples += [["CHANGED", change.target_row, ", ".join(change.changed_columns)]
                        for change in answer.changed_rows]
            out.table(["CHANGE", "ROW", "COLUMNS"], samples, empty="no differences")
            out.note(f"{answer.added_count} added, {answer.removed_count} removed, {answer.changed_count} changed, "
                     f"{answer.unchanged_count} unchanged rows (compared: {', '.join(answer.compared_columns)})")

        def command(client: Client) -> None:
            answer = client.diff_versions(old.dataset, old.version, new.version)
            if json:
                out.data(to_dict(answer))
                return
            rows = []
            for change in answer.changes:
                sizes = f"{size(change.base.size_bytes) if change.HasField('base') else '-'} -> " \
                        f"{size(change.target.size_bytes) if change.HasField('target') else '-'}"
                schema = change.schema_change
                columns = ", ".join([*(f"+{c.name}" for c in schema.added), *(f"-{c.name}" for c in schema.removed),
                                     *(f"~{c.name}" for c in schema.retyped)])
                rows.append([enum_name(change, "kind", "CHANGE_KIND_"), change.path, sizes, columns])
            out.table(["CHANGE", "PATH", "SIZE", "COLUMNS"], rows, empty="no differences")
            out.note(f"{len(answer.changes)} changed, {answer.unchanged_count} unchanged")

        run(session_of(ctx), out, row_command if rows else command)
