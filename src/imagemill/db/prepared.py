"""Hot statements compiled once and run straight on SQLite's cursor.

SQLAlchemy Core builds an execution context for every statement it runs: a job's claim
(one ``UPDATE … RETURNING``) took 255 µs through ``Connection.execute`` and 53 µs on the
driver's cursor (measured on the claim itself). The dozen statements every job runs
(submit, claim, events, outputs, completion, the waiting request's reads) are module
constants, so ``Prepared`` compiles each once and, on SQLite, sends that same SQL with
the same bind and result processing SQLAlchemy would do (its own processors, taken from
the column types), answering plain rows with attribute access. Other databases go
through ``Connection.execute`` unchanged: their round trips dwarf the context.

Driver errors are raised as SQLAlchemy's (``IntegrityError`` and the rest), as
``Connection.execute`` raises them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Delete, Insert, Select, Update, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None
Statement = TypeVar("Statement", bound=Select[Any] | Insert | Update | Delete)


class PreparedRow(tuple[Any, ...]):  # rows are typed ``Any`` for callers, as ``Row`` is
    """A result row: values by position and by column name (``row.status``), as
    SQLAlchemy's ``Row``; ``row._mapping`` for names that are also tuple methods."""

    _names: dict[str, int]

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._names[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._names, self, strict=True))


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for SQLite: its SQL, where each value goes, and how values
    go in and come out."""

    sql: str
    order: tuple[str, ...]  # bind names, in the order of the SQL's placeholders
    defaults: dict[str, Any]  # values fixed in the statement itself
    binds: dict[str, Processor]
    expanding: frozenset[str]  # ``IN`` lists, one placeholder per item
    row: type[PreparedRow] | None
    results: tuple[Processor, ...]


class Prepared(Generic[Statement]):
    """One statement, compiled on SQLite the first time it runs with a set of parameter
    names (as SQLAlchemy does: an ``INSERT`` names the columns given)."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._plans: dict[frozenset[str], _Plan] = {}

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run once with ``params``; its rows (none for a statement that returns none)."""
        params = params or {}
        if conn.dialect.name != "sqlite":
            result = conn.execute(self.statement, dict(params))
            return list(result) if result.returns_rows else []
        return self._on_sqlite(conn, [params])

    def one_or_none(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        found = self.rows(conn, params)
        if len(found) > 1:
            raise exc.MultipleResultsFound("more than one row where at most one was expected")
        return found[0] if found else None

    def one(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.one_or_none(conn, params)
        if row is None:
            raise exc.NoResultFound("no row where one was expected")
        return row

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.one_or_none(conn, params)
        return None if row is None else row[0]

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Run once per mapping in ``rows``; every returned row, in that order."""
        if not rows:
            return []
        if conn.dialect.name != "sqlite":
            result = conn.execute(self.statement, [dict(r) for r in rows])
            return list(result) if result.returns_rows else []
        return self._on_sqlite(conn, rows)

    def _on_sqlite(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        plan = self._plan_for(conn.dialect, rows[0])
        found: list[Any] = []
        cursor = _cursor(conn)
        try:
            if plan.row is None and not plan.expanding:  # no rows back: one driver call
                cursor.executemany(plan.sql, [_bound(plan, r)[1] for r in rows])
                return []
            for params in rows:
                sql, values = _bound(plan, params)
                cursor.execute(sql, values)
                found += _fetched(plan, cursor)
            return found
        except conn.dialect.loaded_dbapi.Error as error:
            raise _translated(error, plan.sql, rows, conn.dialect) from error
        finally:
            cursor.close()

    def _plan_for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Plan:
        keys = frozenset(params)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plans[keys] = _compile(self.statement, dialect, keys)
        return plan


def _compile(
    statement: Select[Any] | Insert | Update | Delete, dialect: Dialect, keys: frozenset[str]
) -> _Plan:
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
    assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
    binds = {name: compiled.binds[name] for name in compiled.positiontup}
    defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
    # Columns SQLAlchemy fills from their Python default when not given.
    prefetched = [(c, c.default) for c in compiled.insert_prefetch]
    prefetched += [(c, c.onupdate) for c in compiled.update_prefetch]
    for column, default in prefetched:
        if default is not None and not default.is_scalar:
            raise TypeError(f"{column.key}: only scalar defaults can be prepared")
        defaults[column.key] = default.arg if default is not None else None  # type: ignore[attr-defined]
    columns = compiled._result_columns  # what SQLAlchemy's own result reads
    row = None
    if columns:
        names = {column[0]: index for index, column in enumerate(columns)}
        row = type("Row", (PreparedRow,), {"_names": names, "__slots__": ()})
    return _Plan(
        sql=compiled.string,
        order=tuple(compiled.positiontup),
        defaults=defaults,
        binds={
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in binds.items()
        },
        expanding=frozenset(name for name, bind in binds.items() if bind.expanding),
        row=row,
        results=tuple(
            column[3].dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ),
    )


def _bound(plan: _Plan, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The SQL to send (``IN`` lists written out) and its values, each processed."""
    values: list[Any] = []
    sql = plan.sql
    for name in plan.order:
        if name in params:
            value = params[name]
        elif name in plan.defaults:
            value = plan.defaults[name]
        else:
            missing = exc.InvalidRequestError(f"A value is required for bind parameter {name!r}")
            raise exc.StatementError(str(missing), plan.sql, dict(params), missing)
        processor = plan.binds[name]
        if name in plan.expanding:
            items = list(value)
            values += [processor(item) for item in items] if processor else items
            # An empty list as SQLAlchemy writes it: IN is false, NOT IN true.
            listed = ", ".join("?" * len(items)) or "SELECT 1 FROM (SELECT 1) WHERE 1!=1"
            sql = sql.replace(f"(__[POSTCOMPILE_{name}])", f"({listed})", 1)
        else:
            values.append(processor(value) if processor else value)
    return sql, values


def _cursor(conn: Connection) -> Any:
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def _fetched(plan: _Plan, cursor: Any) -> list[Any]:
    if plan.row is None:
        return []
    results, row = plan.results, plan.row
    return [
        row(p(v) if p else v for p, v in zip(results, raw, strict=True))
        for raw in cursor.fetchall()
    ]


def _translated(error: Exception, sql: str, params: Any, dialect: Dialect) -> Exception:
    return exc.DBAPIError.instance(sql, params, error, dialect.loaded_dbapi.Error)
