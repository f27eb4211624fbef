"""Convert supported table types (pandas, polars, Arrow, interchange, dict) to a pandas DataFrame."""
from __future__ import annotations

from typing import Any

import pandas as pd

from .errors import DataError


def to_pandas(data: Any) -> pd.DataFrame:
    """Return ``data`` as a pandas DataFrame; raises DataError for unsupported types or duplicate columns."""
    df = _convert(data)
    idx, columns = df.index, df.columns
    if columns.inferred_type == "string" and columns.is_unique and \
            isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return df        # the usual case (both checks are cached on the index): nothing to fix
    names = columns.tolist()
    cols = names if all(type(c) is str for c in names) else [str(c) for c in names]
    if len(set(cols)) != len(cols):
        dups = sorted({c for c in cols if cols.count(c) > 1})
        raise DataError(f"data has duplicate column names: {', '.join(map(repr, dups))}")
    if cols is not names:
        df = df.set_axis(cols, axis=1)
    idx = df.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return df                    # already 0..n-1 (reset_index would only copy the frame)
    return df.reset_index(drop=True)


def _convert(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    mod = type(data).__module__
    if mod.startswith("polars") and hasattr(data, "to_pandas"):
        return data.to_pandas()
    if mod.startswith("pyarrow") and hasattr(data, "to_pandas"):
        return data.to_pandas()
    if isinstance(data, dict):
        try:
            return pd.DataFrame({k: list(v) if not hasattr(v, "__len__") else v for k, v in data.items()})
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot build a table from the dict: {exc}") from exc
    if hasattr(data, "__arrow_c_stream__"):
        import pyarrow as pa

        return pa.table(data).to_pandas()
    if hasattr(data, "__dataframe__"):
        return pd.api.interchange.from_dataframe(data)
    raise DataError(
        f"unsupported data type {type(data).__name__}: pass a pandas or polars DataFrame, a pyarrow Table, "
        "an object with __dataframe__/__arrow_c_stream__, or a dict of equal-length arrays")


def column_array(df: pd.DataFrame, name: str):
    """The array behind column ``name`` (a numpy array or a pandas extension array such as a
    Categorical), without building a Series: pandas 3 spends about 10 us on each Series, which
    adds up over a formula's columns in every small fit. Falls back to ``df[name].array``."""
    try:
        loc = df.columns.get_loc(name)
        if isinstance(loc, int):
            return df._mgr.iget_values(loc)
    except (AttributeError, TypeError, KeyError):
        pass
    return df[name].array
