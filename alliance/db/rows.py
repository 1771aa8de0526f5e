"""Two SQL building blocks that differ between PostgreSQL and SQLite, for statements written once in
SQLAlchemy Core: JSON text given as a parameter, and the rows of a JSON array given as a parameter.

A multi-row insert whose rows arrive as one JSON parameter (``INSERT ... SELECT ... FROM <rows>``) is
one statement whatever the number of rows, so it can be a CTE of a larger PostgreSQL statement and
still be the very statement SQLite runs on its own. (One JSON parameter also costs asyncpg less than
one array parameter per column: it inspects every array element.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, BindParameter, Table, Text, bindparam, cast, column, func, insert, select, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

__all__ = ["insert_row", "json_list", "json_rows", "json_text"]


def json_text(name: str, dialect: str) -> ColumnElement[Any]:
    """A parameter carrying JSON text (already encoded by the caller), for a JSON column."""
    text: BindParameter[str] = bindparam(name, type_=Text())
    return cast(text, JSON) if dialect == "postgresql" else text


def json_rows(name: str, columns: Sequence[tuple[str, TypeEngine[Any]]], dialect: str, alias: str) -> Any:
    """A FROM item with one row per object of the JSON array parameter ``name`` and the given columns
    (``.c.<column>``): ``json_to_recordset`` on PostgreSQL, ``json_each`` + ``json_extract`` on SQLite."""
    if dialect == "postgresql":
        return (
            func.json_to_recordset(json_text(name, dialect))
            .table_valued(*(column(key, type_) for key, type_ in columns))
            .render_derived(name=alias, with_types=True)
        )
    each = func.json_each(bindparam(name, type_=Text())).table_valued("value").alias(f"{alias}_each")
    return select(
        *(func.json_extract(each.c.value, f"$.{key}", type_=type_).label(key) for key, type_ in columns)
    ).subquery(alias)


def insert_row(table: Table, prefix: str, dialect: str, gate: ColumnElement[bool] | None = None) -> Any:
    """``INSERT INTO table (every column but an autoincrement id) SELECT :<prefix><column>, ...`` - one row
    from named parameters, written only where ``gate`` holds (a CTE's success condition); JSON columns
    take JSON text."""
    names: list[str] = []
    values: list[ColumnElement[Any]] = []
    for col in table.columns:
        if col.autoincrement is True and col.primary_key:
            continue
        names.append(col.key)
        if isinstance(col.type, JSON):
            values.append(json_text(prefix + col.key, dialect))
        else:
            values.append(bindparam(prefix + col.key, type_=col.type))
    return insert(table).from_select(names, select(*values).where(true() if gate is None else gate))


def json_list(dialect: str, *columns: Any) -> Any:
    """Aggregate: a JSON array (as text) of one ``[column, ...]`` array per row; NULL or ``[]`` if none."""
    if dialect == "postgresql":
        return cast(func.json_agg(func.json_build_array(*columns)), Text)
    return func.json_group_array(func.json_array(*columns))
