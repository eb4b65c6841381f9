"""Previews as Arrow tables. pyarrow is optional (`pip install quarry-client[arrow]`) and imported here only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quarry._exceptions import MissingDependency

if TYPE_CHECKING:
    import pyarrow

__all__ = ["to_table"]


def to_table(response: Any) -> pyarrow.Table:
    """The rows of a PreviewFileResponse, decoded from its Arrow IPC stream."""
    try:
        import pyarrow.ipc
    except ImportError as exc:
        raise MissingDependency("preview as a table needs pyarrow: pip install 'quarry-client[arrow]'") from exc
    return pyarrow.ipc.open_stream(response.arrow_ipc_stream).read_all()
