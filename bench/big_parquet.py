"""A big Parquet file for benchmarks and the big-file tests: random (incompressible) doubles, written row
group by row group, so making it never holds more than one row group in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = 10
GROUP_ROWS = 1 << 20


def make_big_parquet(path: Path, size: int, columns: int = COLUMNS, group_rows: int = GROUP_ROWS) -> int:
    """Write about `size` bytes of Parquet (`columns` float64 columns c0, c1, …, uncompressed); its row count."""
    rows = max(1, size // (8 * columns))
    rng = np.random.default_rng(11)
    schema = pa.schema([(f"c{i}", pa.float64()) for i in range(columns)])
    written = 0
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        while written < rows:
            count = min(group_rows, rows - written)
            writer.write_table(pa.table([pa.array(rng.random(count)) for _ in range(columns)], schema=schema),
                               row_group_size=group_rows)
            written += count
    return written
