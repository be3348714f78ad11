"""An index-free search engine for argilla-server 2.8.0 that answers from the server's database.

Importing this module registers the engine as ``ARGILLA_SEARCH_ENGINE=sqlite``. It keeps no
index: every write hook is a no-op, and ``search`` (filters, text match, sort, offset, limit,
total), the progress counts and the metadata metrics are SQL queries on the server's own
tables (SQLite at ``$ARGILLA_HOME_PATH/argilla.db``), run through the server's SQLAlchemy
models and session factory. The server commits before it calls the engine, so a fresh session
per call sees every change.

Runs inside the argilla-server virtualenv only: imports argilla_server and sqlalchemy, nothing
from the toolkit.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from argilla_server.enums import (
    MetadataPropertyType,
    RecordStatus,
    ResponseStatus,
    ResponseStatusFilter,
    SimilarityOrder,
    SortOrder,
)
from argilla_server.models import (
    Dataset,
    Field,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    cast,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)

ENGINE_NAME = "sqlite"

_LOGGER = logging.getLogger("argilla.server.search_engine.sqlite")
_ROWID = literal_column("records.rowid")
_DATETIME_PROPERTIES = {"inserted_at", "updated_at"}
_RECORD_PROPERTIES = {"id", "external_id", "inserted_at", "updated_at", "status"}
# Tokens of Elasticsearch's simple_query_string that we honour: "quoted phrases", words,
# a leading '-' (must not) or '+' (must), a trailing '*' (prefix: substring match covers it).
_QUERY_TOKEN = re.compile(r'([+-]?)"([^"]*)"|(\S+)')


def _json_path(*keys: str) -> str:
    """A SQLite JSON path for nested object keys, each key quoted."""
    return "$" + "".join('."' + key.replace('"', '\\"') + '"' for key in keys)


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _parse_text_query(q: str) -> list[tuple[bool, str]]:
    """Split a simple_query_string into (negated, term) pairs; every term must match (AND)."""
    terms: list[tuple[bool, str]] = []
    for match in _QUERY_TOKEN.finditer(q):
        sign, phrase, word = match.group(1), match.group(2), match.group(3)
        if phrase is not None:
            term, negated = phrase, sign == "-"
        else:
            negated = word.startswith("-")
            term = word.lstrip("+-").rstrip("*").strip("()")
            if term in {"|", "&"}:
                continue
        if term:
            terms.append((negated, term))
    return terms


def _to_datetime(value: Any) -> datetime:
    """Bounds on inserted_at/updated_at: ISO strings or epoch milliseconds, as naive UTC."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _any_json_value(json_column: Any, path: str, values: list[str]) -> ColumnElement:
    """True when the JSON value at ``path`` (a scalar, or any element of an array) is in values.

    ``json_each`` on a scalar yields one row, on an array one row per element, on a missing
    path none.
    """
    items = func.json_each(json_column, path).table_valued("value")
    return (
        select(literal(1))
        .select_from(items)
        .where(cast(items.c.value, Text).in_([str(value) for value in values]))
        .exists()
    )


def _any_json_in_range(json_column: Any, path: str, ge: Any, le: Any) -> ColumnElement:
    """True when the JSON number at ``path`` (or any element of an array) lies in [ge, le]."""
    items = func.json_each(json_column, path).table_valued("value")
    conditions = [items.c.value.is_not(None)]
    if ge is not None:
        conditions.append(items.c.value >= ge)
    if le is not None:
        conditions.append(items.c.value <= le)
    return select(literal(1)).select_from(items).where(*conditions).exists()


def _range(expression: Any, ge: Any, le: Any) -> ColumnElement:
    conditions = [expression.is_not(None)]
    if ge is not None:
        conditions.append(expression >= ge)
    if le is not None:
        conditions.append(expression <= le)
    return and_(*conditions)


def _question_id(dataset_id: UUID, name: str) -> Any:
    return (
        select(Question.id)
        .where(Question.dataset_id == dataset_id, Question.name == name)
        .limit(1)
        .scalar_subquery()
    )


def _user_shuffle(user_id: UUID | str) -> ColumnElement:
    """A per-user, deterministic pseudo-random order of records (as Elasticsearch's
    ``random_score`` seeded by user id): two annotators do not walk the queue in step.

    A quadratic hash of the rowid, in 64-bit integer SQL (every product stays below 2**62).
    """
    seed = UUID(str(user_id)).int
    a = (seed % 2_147_483_629) | 1
    b = (seed >> 64) % 2_147_483_647
    c = (seed >> 32) % 1_000_000_007
    mixed = (_ROWID * a + b) % 2_147_483_647
    return (mixed * mixed + c) % 1_000_000_007


class _Query:
    """Builds the SQL conditions and ordering for one dataset."""

    def __init__(self, dataset_id: UUID) -> None:
        self.dataset_id = dataset_id

    # filters -------------------------------------------------------------------------------

    def filter(self, filter: Filter) -> ColumnElement:
        if isinstance(filter, AndFilter):
            return and_(true(), *[self.filter(child) for child in filter.filters])
        scope = filter.scope
        if isinstance(scope, RecordFilterScope):
            return self._record_filter(filter, scope)
        if isinstance(scope, MetadataFilterScope):
            return self._metadata_filter(filter, scope)
        if isinstance(scope, SuggestionFilterScope):
            return self._suggestion_filter(filter, scope)
        if isinstance(scope, ResponseFilterScope):
            return self._response_filter(filter, scope)
        raise ValueError(f"Cannot process filter scope {scope!r}")

    def _record_filter(self, filter: Filter, scope: RecordFilterScope) -> ColumnElement:
        prop = str(scope.property)
        if prop not in _RECORD_PROPERTIES:
            raise ValueError(f"Cannot filter on record property {prop!r}")
        column = getattr(Record, prop)
        if isinstance(filter, TermsFilter):
            if prop == "id":
                ids = []
                for value in filter.values:
                    try:
                        ids.append(UUID(str(value)))
                    except ValueError:
                        continue
                return column.in_(ids) if ids else false()
            if prop == "status":
                return column.in_([RecordStatus(value) for value in filter.values])
            if prop in _DATETIME_PROPERTIES:
                return column.in_([_to_datetime(value) for value in filter.values])
            return column.in_([str(value) for value in filter.values])
        if isinstance(filter, RangeFilter):
            ge, le = filter.ge, filter.le
            if prop in _DATETIME_PROPERTIES:
                ge = None if ge is None else _to_datetime(ge)
                le = None if le is None else _to_datetime(le)
            return _range(column, ge, le)
        raise ValueError(f"Cannot process filter {filter!r}")

    def _metadata_filter(self, filter: Filter, scope: MetadataFilterScope) -> ColumnElement:
        path = _json_path(scope.metadata_property)
        if isinstance(filter, TermsFilter):
            return _any_json_value(Record.metadata_, path, filter.values)
        if isinstance(filter, RangeFilter):
            return _range(func.json_extract(Record.metadata_, path), filter.ge, filter.le)
        raise ValueError(f"Cannot process filter {filter!r}")

    def _suggestion_filter(self, filter: Filter, scope: SuggestionFilterScope) -> ColumnElement:
        prop = scope.property or "value"
        if prop in {"value", "score"}:
            column = Suggestion.value if prop == "value" else Suggestion.score
            if isinstance(filter, TermsFilter):
                condition = _any_json_value(column, "$", filter.values)
            elif isinstance(filter, RangeFilter):
                condition = _any_json_in_range(column, "$", filter.ge, filter.le)
            else:
                raise ValueError(f"Cannot process filter {filter!r}")
        elif prop in {"agent", "type"}:
            column = getattr(Suggestion, prop)
            if isinstance(filter, TermsFilter):
                condition = cast(column, Text).in_([str(value) for value in filter.values])
            elif isinstance(filter, RangeFilter):
                condition = _range(column, filter.ge, filter.le)
            else:
                raise ValueError(f"Cannot process filter {filter!r}")
        else:
            raise ValueError(f"Cannot filter on suggestion property {prop!r}")
        return (
            select(literal(1))
            .select_from(Suggestion)
            .where(
                Suggestion.record_id == Record.id,
                Suggestion.question_id == _question_id(self.dataset_id, scope.question),
                condition,
            )
            .exists()
        )

    def _response_exists(self, user: User | None, *conditions: Any) -> ColumnElement:
        where = [Response.record_id == Record.id, *conditions]
        if user is not None:
            where.append(Response.user_id == user.id)
        return select(literal(1)).select_from(Response).where(*where).exists()

    def _response_filter(self, filter: Filter, scope: ResponseFilterScope) -> ColumnElement:
        if scope.question:
            path = _json_path(scope.question, "value")
            if isinstance(filter, TermsFilter):
                condition = _any_json_value(Response.values, path, filter.values)
            elif isinstance(filter, RangeFilter):
                condition = _range(func.json_extract(Response.values, path), filter.ge, filter.le)
            else:
                raise ValueError(f"Cannot process filter {filter!r}")
            return self._response_exists(scope.user, condition)
        if scope.property == "status" and isinstance(filter, TermsFilter):
            values = [str(value) for value in filter.values]
            statuses = [
                ResponseStatus(value) for value in values if value != ResponseStatusFilter.pending
            ]
            alternatives = []
            if ResponseStatusFilter.pending in values:
                # The annotator's queue: records this user (or, with no user, anyone) has not
                # answered yet.
                alternatives.append(not_(self._response_exists(scope.user)))
            if statuses:
                alternatives.append(
                    self._response_exists(scope.user, Response.status.in_(statuses))
                )
            return or_(false(), *alternatives)
        raise ValueError(f"Cannot process filter scope {scope!r}")

    # text ------------------------------------------------------------------------------------

    @staticmethod
    def _field_contains(field: Field, pattern: str) -> ColumnElement:
        path = _json_path(field.name)
        if field.settings.get("type") == "text":
            return func.json_extract(Record.fields, path).like(pattern, escape="\\")
        nodes = func.json_tree(Record.fields, path).table_valued("value", "type")
        return (
            select(literal(1))
            .select_from(nodes)
            .where(nodes.c.type == "text", nodes.c.value.like(pattern, escape="\\"))
            .exists()
        )

    def text(self, fields: list[Field], query: TextQuery | str) -> ColumnElement:
        """ES simple_query_string in SQL: every term (a word or "a phrase") is a case-insensitive
        (ASCII) substring of some searched field; '-term' must not occur."""
        if isinstance(query, str):
            query = TextQuery(q=query)
        if query.field:
            targets = [field for field in fields if field.name == query.field]
            if not targets:
                raise ValueError(f"Field {query.field} not found in dataset {self.dataset_id}")
        else:
            targets = [field for field in fields if field.settings.get("type") != "image"]
        terms = _parse_text_query(query.q)
        if not targets:
            return false()
        conditions = []
        for negated, term in terms:
            pattern = _like_pattern(term)
            matched = or_(*[self._field_contains(field, pattern) for field in targets])
            conditions.append(not_(matched) if negated else matched)
        return and_(true(), *conditions)

    # sort ------------------------------------------------------------------------------------

    def order(self, order: Order) -> Any:
        scope = order.scope
        if isinstance(scope, RecordFilterScope):
            if str(scope.property) not in _RECORD_PROPERTIES:
                raise ValueError(f"Cannot sort by record property {scope.property!r}")
            expression: Any = getattr(Record, str(scope.property))
        elif isinstance(scope, MetadataFilterScope):
            expression = func.json_extract(Record.metadata_, _json_path(scope.metadata_property))
        elif isinstance(scope, SuggestionFilterScope):
            prop = scope.property or "value"
            if prop in {"value", "score"}:
                column = Suggestion.value if prop == "value" else Suggestion.score
                value: Any = func.json_extract(column, "$")
            elif prop in {"agent", "type"}:
                value = getattr(Suggestion, prop)
            else:
                raise ValueError(f"Cannot sort by suggestion property {prop!r}")
            expression = (
                select(value)
                .where(
                    Suggestion.record_id == Record.id,
                    Suggestion.question_id == _question_id(self.dataset_id, scope.question),
                )
                .limit(1)
                .scalar_subquery()
            )
        elif isinstance(scope, ResponseFilterScope):
            if scope.question:
                value = func.avg(
                    func.json_extract(Response.values, _json_path(scope.question, "value"))
                )
            else:
                value = func.min(cast(Response.status, Text))
            where = [Response.record_id == Record.id]
            if scope.user is not None:
                where.append(Response.user_id == scope.user.id)
            expression = select(value).where(*where).scalar_subquery()
        else:
            raise ValueError(f"Cannot sort by scope {scope!r}")
        if str(order.order) == SortOrder.desc:
            return expression.desc().nulls_last()
        return expression.asc().nulls_last()


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    """Search engine that reads the server's own database at query time (no index)."""

    @classmethod
    async def new_instance(cls) -> SQLSearchEngine:
        return cls()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {
            "name": ENGINE_NAME,
            "engine": "curation.localserver.search_engine",
            "version": sqlite3.sqlite_version,
        }

    @staticmethod
    def _session() -> Any:
        from argilla_server.database import AsyncSessionLocal

        return AsyncSessionLocal()

    # index maintenance: nothing to do, the database is the index ---------------------------

    async def create_index(self, dataset: Dataset) -> None:
        return None

    async def delete_index(self, dataset: Dataset) -> None:
        return None

    async def configure_metadata_property(
        self, dataset: Dataset, metadata_property: MetadataProperty
    ) -> None:
        return None

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        return None

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        return None

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def update_record_response(self, response: Response) -> None:
        return None

    async def delete_record_response(self, response: Response) -> None:
        return None

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    # progress and metrics --------------------------------------------------------------------

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        statement = (
            select(Record.status, func.count())
            .where(Record.dataset_id == dataset.id)
            .group_by(Record.status)
        )
        async with self._session() as db:
            rows = (await db.execute(statement)).all()
        counts = {str(status): count for status, count in rows}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        statement = (
            select(Response.status, func.count())
            .join(Record, Record.id == Response.record_id)
            .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
            .group_by(Response.status)
        )
        async with self._session() as db:
            rows = (await db.execute(statement)).all()
        counts = {str(status): count for status, count in rows}
        return {"total": sum(counts.values()), **counts}

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        path = _json_path(metadata_property.name)
        in_dataset = Record.dataset_id == metadata_property.dataset_id
        async with self._session() as db:
            if metadata_property.type == MetadataPropertyType.terms:
                items = func.json_each(Record.metadata_, path).table_valued("value")
                term = cast(items.c.value, Text)
                statement = (
                    select(term, func.count())
                    .select_from(Record)
                    .join(items, true())
                    .where(in_dataset, items.c.value.is_not(None))
                    .group_by(term)
                    .order_by(func.count().desc(), term)
                )
                rows = (await db.execute(statement)).all()
                values = [TermsMetrics.TermCount(term=str(t), count=c) for t, c in rows]
                return TermsMetrics(total=sum(v.count for v in values), values=values)
            value = func.json_extract(Record.metadata_, path)
            statement = select(func.min(value), func.max(value)).where(in_dataset)
            low, high = (await db.execute(statement)).one()
        if metadata_property.type == MetadataPropertyType.integer:
            return IntegerMetadataMetrics(
                min=None if low is None else int(low), max=None if high is None else int(high)
            )
        return FloatMetadataMetrics(
            min=None if low is None else float(low), max=None if high is None else float(high)
        )

    # search ------------------------------------------------------------------------------------

    async def _conditions(
        self,
        db: Any,
        dataset: Dataset,
        query: TextQuery | str | None,
        filter: Filter | None,
    ) -> list[Any]:
        builder = _Query(dataset.id)
        conditions: list[Any] = [Record.dataset_id == dataset.id]
        if filter is not None:
            conditions.append(builder.filter(filter))
        if query is not None and (query if isinstance(query, str) else query.q).strip():
            fields = (
                await db.execute(select(Field).where(Field.dataset_id == dataset.id))
            ).scalars()
            conditions.append(builder.text(list(fields), query))
        return conditions

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: UUID | str | None = None,
    ) -> SearchResponses:
        builder = _Query(dataset.id)
        ordering: list[Any] = [builder.order(order) for order in sort or []]
        if not ordering and user_id is not None:
            ordering.append(_user_shuffle(user_id))
        ordering.append(_ROWID)
        async with self._session() as db:
            conditions = await self._conditions(db, dataset, query, filter)
            statement = (
                select(Record.id, func.count().over().label("total"))
                .where(*conditions)
                .order_by(*ordering)
                .offset(offset)
                .limit(limit)
            )
            rows = (await db.execute(statement)).all()
            if rows:
                total = rows[0].total
            elif offset == 0:
                total = 0
            else:
                count = select(func.count()).select_from(Record).where(*conditions)
                total = (await db.execute(count)).scalar_one()
        score = None if sort else 1.0
        return SearchResponses(
            items=[SearchResponseItem(record_id=row.id, score=score) for row in rows], total=total
        )

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        """Brute-force cosine similarity over the stored vectors (fine for a few 10k records)."""
        if bool(value) == bool(record):
            raise ValueError(
                "Must provide either vector value or record to compute the similarity search"
            )
        target = value or record.vector_value_by_vector_settings(vector_settings)
        if not target:
            raise ValueError("Cannot find a vector value to apply with provided info")
        norm = math.sqrt(sum(x * x for x in target)) or 1.0
        sign = -1.0 if order == SimilarityOrder.least_similar else 1.0
        async with self._session() as db:
            conditions = await self._conditions(db, dataset, query, filter)
            if record is not None:
                conditions.append(Record.id != record.id)
            statement = (
                select(Vector.record_id, Vector.value)
                .join(Record, Record.id == Vector.record_id)
                .where(Vector.vector_settings_id == vector_settings.id, *conditions)
            )
            rows = (await db.execute(statement)).all()
        scored = []
        for record_id, vector in rows:
            if not vector or len(vector) != len(target):
                continue
            other = math.sqrt(sum(x * x for x in vector)) or 1.0
            cosine = sign * sum(x * y for x, y in zip(target, vector, strict=True)) / (norm * other)
            score = (1.0 + cosine) / 2.0  # Elasticsearch's cosine score, in [0, 1]
            if threshold is None or score >= threshold:
                scored.append((score, record_id))
        scored.sort(key=lambda item: item[0], reverse=True)
        items = [SearchResponseItem(record_id=rid, score=s) for s, rid in scored[:max_results]]
        return SearchResponses(items=items, total=len(items))
