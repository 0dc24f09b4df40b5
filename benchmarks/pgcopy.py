"""PostgreSQL's binary COPY format built from numpy columns, for loading benchmark galleries fast."""

from __future__ import annotations

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], ">i4").tobytes()  # signature, flags, no extension
TRAILER = np.array([-1], ">i2").tobytes()


def rows(columns: list[np.ndarray]) -> bytes:
    """Binary COPY tuples (no header or trailer) from equal-length columns of fixed-width values: int64
    columns as `bigint`, bytes columns (dtype S or V) as `text`/`bytea` sent byte for byte."""
    count = len(columns[0])
    fields: list[tuple[str, np.dtype]] = [("fields", np.dtype(">i2"))]
    for n, column in enumerate(columns):
        wire = np.dtype(">i8") if column.dtype.kind == "i" else column.dtype
        fields += [(f"length{n}", np.dtype(">i4")), (f"value{n}", wire)]
    table = np.empty(count, np.dtype(fields))
    table["fields"] = len(columns)
    for n, column in enumerate(columns):
        table[f"length{n}"] = table.dtype[f"value{n}"].itemsize
        table[f"value{n}"] = column
    return table.tobytes()
