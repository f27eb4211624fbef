"""Convert supported table types (pandas, polars, Arrow, interchange, dict) to a pandas DataFrame.

Level order of categorical columns (which level is the reference of treatment contrasts):

* a pandas Categorical keeps its categories' order, as R keeps a factor's levels (``ordered``
  or not); an ordered one is R's ordered factor;
* a polars ``Categorical`` is sorted as R's ``factor()`` sorts (polars numbers its categories
  in order of first appearance, which is no statement about the levels); a polars ``Enum``
  keeps its declared order (an R factor made with ``levels =``, not ordered);
* an Arrow dictionary column (pyarrow Table / RecordBatch, ``__arrow_c_stream__``) is sorted
  unless its type is ``ordered`` (kept, as R's arrow package makes an ordered factor of it),
  it is a polars Enum, or the table's pandas metadata says it was a pandas Categorical (kept);
* a categorical column through the dataframe interchange protocol is sorted unless ordered.

Integer columns with missing values from Arrow or polars stay exact (pandas nullable
``Int64``/``UInt64`` instead of ``float64``) when a value is beyond 2^53, where doubles would
merge neighbouring ids.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .collation import r_sorted
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
        return _from_polars(data)
    if mod.startswith("pyarrow") and hasattr(data, "to_pandas") and hasattr(data, "schema"):
        return _from_arrow(data)
    if isinstance(data, dict):
        try:
            return pd.DataFrame({k: list(v) if not hasattr(v, "__len__") else v for k, v in data.items()})
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot build a table from the dict: {exc}") from exc
    if hasattr(data, "__arrow_c_stream__"):
        import pyarrow as pa

        return _from_arrow(pa.table(data))
    if hasattr(data, "__dataframe__"):
        df = pd.api.interchange.from_dataframe(data)
        return _sort_categories(df, [c for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)
                                     and not df[c].cat.ordered])
    raise DataError(
        f"unsupported data type {type(data).__name__}: pass a pandas or polars DataFrame, a pyarrow Table, "
        "an object with __dataframe__/__arrow_c_stream__, or a dict of equal-length arrays")


_EXACT = 2 ** 53


def _from_polars(data) -> pd.DataFrame:
    """A polars DataFrame as pandas: Categorical levels sorted, Enum levels kept (unordered),
    nullable integer columns beyond 2^53 exact."""
    df = data.to_pandas()
    schema = data.schema
    to_sort, enums = [], []
    for name, dtype in schema.items():
        kind = type(dtype).__name__ if not isinstance(dtype, type) else dtype.__name__
        if kind == "Categorical":
            to_sort.append(name)
        elif kind == "Enum":
            enums.append(name)
        elif kind in ("Int64", "UInt64") and df[name].dtype.kind == "f":   # nulls made it float
            col = data[name]
            big = max(abs(col.min() or 0), abs(col.max() or 0))
            if big > _EXACT:
                df[name] = pd.array(col.to_list(), dtype=kind)
    for name in enums:
        if isinstance(df[name].dtype, pd.CategoricalDtype) and df[name].cat.ordered:
            df[name] = df[name].cat.as_unordered()
    return _sort_categories(df, to_sort)


def _from_arrow(table) -> pd.DataFrame:
    """A pyarrow Table / RecordBatch as pandas with the level rules of the module docstring."""
    import pyarrow as pa

    try:
        df = table.to_pandas()
    except (TypeError, ValueError, pa.ArrowException):
        df = _arrow_by_column(table)   # pyarrow cannot rebuild a column (that may not be used)
    schema = table.schema
    try:
        meta = schema.pandas_metadata or {}
    except (ValueError, TypeError):                    # unreadable pandas metadata: ignore it
        meta = {}
    # pandas Categoricals (their metadata has num_categories), not pandas' ArrowDtype dictionary
    # columns, which pandas also records as "categorical" but whose dictionary is in order of
    # first appearance, no statement about the levels
    from_pandas = {c.get("name") for c in meta.get("columns", []) if c.get("pandas_type") == "categorical"
                   and isinstance(c.get("metadata"), dict) and "num_categories" in c["metadata"]}
    to_sort = []
    for field in schema:
        name, typ = field.name, field.type
        if name not in df.columns:
            continue
        fmeta = field.metadata or {}
        if pa.types.is_dictionary(typ):
            is_enum = any(k.startswith(b"_PL_ENUM") for k in fmeta)
            if is_enum:
                if isinstance(df[name].dtype, pd.CategoricalDtype) and df[name].cat.ordered:
                    df[name] = df[name].cat.as_unordered()
            elif not typ.ordered and name not in from_pandas:
                to_sort.append(name)
        elif pa.types.is_integer(typ) and typ.bit_width == 64 and df[name].dtype.kind == "f":
            col = table.column(name)
            import pyarrow.compute as pc

            mm = pc.min_max(col).as_py()
            big = max(abs(mm["min"] or 0), abs(mm["max"] or 0))
            if big > _EXACT:
                df[name] = pd.array(col.to_pylist(), dtype="UInt64" if pa.types.is_unsigned_integer(typ)
                                    else "Int64")
    return _sort_categories(df, to_sort)


def _arrow_by_column(table) -> pd.DataFrame:
    """``table.to_pandas()`` column by column, for a table whose conversion fails on some column
    (pyarrow 26 cannot rebuild a dictionary of pandas Intervals, as ``pd.cut`` makes, and
    raises TypeError: unhashable type 'dict' for the whole table): a failing dictionary column
    becomes a Categorical of its decoded dictionary, any other an object column of its Python
    values (refused, naming the column, only if the formula uses it)."""
    import pyarrow as pa

    cols = []
    for i, typ in enumerate(table.schema.types):
        col = table.column(i)
        try:
            cols.append(table.select([i]).to_pandas().iloc[:, 0])
            continue
        except (TypeError, ValueError, pa.ArrowException):
            pass
        arr = col.combine_chunks() if hasattr(col, "combine_chunks") else col
        try:
            if not pa.types.is_dictionary(typ):
                raise TypeError
            codes = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
            cats = pd.Index(arr.dictionary.to_pandas())
            cols.append(pd.Series(pd.Categorical.from_codes(codes, categories=cats, ordered=typ.ordered)))
        except (TypeError, ValueError, pa.ArrowException):
            cols.append(pd.Series(arr.to_pylist(), dtype=object))
    df = pd.concat([c.reset_index(drop=True) for c in cols], axis=1, ignore_index=True) if cols else \
        pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    df.columns = list(table.column_names)
    return df


def _sort_categories(df: pd.DataFrame, names: list) -> pd.DataFrame:
    """Reorder the categories of columns ``names`` as R's factor() sorts levels (codes follow)."""

    for name in names:
        s = df[name]
        if not isinstance(s.dtype, pd.CategoricalDtype):
            continue
        cats = s.cat.categories
        order = r_sorted(list(cats))
        if order != list(cats):
            df[name] = s.cat.reorder_categories(order)
    return df


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
