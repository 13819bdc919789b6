"""Compiles a QIDO-RS ``QueryDescription`` to one parameterised SQLite statement.

The meaning of each condition is ``dicom_core.query.matching``; this module only translates
it, and tests/property/test_query_compiler.py checks the translation against that reference
on random data. Every value from the request travels as a bound parameter; the SQL text is
assembled from this module's own fragments and the schema's column names only.

Tables (``schema.py``): ``study`` and ``series`` are summaries holding the latest stored
instance's values and matching keys (``*_norm`` for PN, ``*_fold`` for case-insensitive
strings), ``instance`` the instances. The statement pages first (WHERE, ORDER BY the latest
watermark descending, LIMIT/OFFSET) and only then joins the page to the precomputed DICOM
JSON of the latest instances it needs, so skipped rows never load metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicom_core.query.conditions import (
    EXTERNAL_METADATA_PATH,
    Condition,
    FuzzyMatch,
    ListMatch,
    QueryAttribute,
    QueryDescription,
    QueryLevel,
    RangeMatch,
    UnsupportedCondition,
    ValueMatch,
    WildcardMatch,
)
from dicom_core.query.indexed_values import NUMERIC_VRS
from dicom_core.storage.local.schema import (
    SERIES_COLUMNS,
    SERIES_NORMALIZED_COLUMNS,
    STUDY_COLUMNS,
    STUDY_NORMALIZED_COLUMNS,
    STUDY_TEXT_COLUMNS,
    STUDY_TEXT_TABLE,
)

CREATED = 1

# Aliases: st = study summary, se = series summary, i = instance.
_UID_COLUMNS: dict[str, dict[QueryLevel, str]] = {
    # The finest table a level has, so that scoped searches use that table's own index.
    "StudyInstanceUID": {
        QueryLevel.STUDY: "st.study_uid",
        QueryLevel.SERIES: "se.study_uid",
        QueryLevel.INSTANCE: "i.study_uid",
    },
    "SeriesInstanceUID": {QueryLevel.SERIES: "se.series_uid", QueryLevel.INSTANCE: "i.series_uid"},
    "SOPInstanceUID": {QueryLevel.INSTANCE: "i.sop_uid"},
}


@dataclass(frozen=True, slots=True)
class CompiledSearch:
    sql: str
    params: tuple[object, ...]


def glob_pattern(pattern: str) -> str:
    """A DICOM wildcard pattern as a GLOB pattern: ``*`` and ``?`` carry over, ``[`` is escaped.

    GLOB is case-sensitive and compares whole characters, which is what the keys need: the
    case was folded when the keys were made. It reads its arguments as C strings, ending at a
    NUL; text keys and patterns hold none (``domain.index_attributes.fold_text``).
    """
    return pattern.replace("[", "[[]")


def _column(attribute: QueryAttribute, level: QueryLevel) -> str:
    """The column holding the attribute's matching key, seen from a search at ``level``."""
    if attribute.extended:
        raise UnsupportedCondition(f"extended query tag {attribute.tag} is not indexed here")
    uid_columns = _UID_COLUMNS.get(attribute.keyword)
    if uid_columns is not None:
        return uid_columns[level]
    table = "st" if attribute.level is QueryLevel.STUDY else "se"
    normalized = STUDY_NORMALIZED_COLUMNS if table == "st" else SERIES_NORMALIZED_COLUMNS
    plain = STUDY_COLUMNS if table == "st" else SERIES_COLUMNS
    column = normalized.get(attribute.keyword) or plain.get(attribute.keyword)
    if column is None:
        raise UnsupportedCondition(f"{attribute.keyword} has no column in the SQLite index")
    return f"{table}.{column}"


def sql_predicate(condition: Condition, column: str, params: list[object]) -> str:
    """The SQL test of one key column against one condition (see conditions.py)."""
    if isinstance(condition, ValueMatch):
        params.append(condition.key)
        return f"{column} = ?"
    if isinstance(condition, ListMatch):
        params.extend(condition.keys)
        return f"{column} IN ({', '.join('?' for _ in condition.keys)})"
    if isinstance(condition, RangeMatch):
        tests = [f"{column} <> ''"]
        if condition.lower is not None:
            params.append(condition.lower)
            tests.append(f"{column} >= ?")
        if condition.upper is not None:
            params.append(condition.upper)
            tests.append(f"{column} <= ?")
        return "(" + " AND ".join(tests) + ")"
    if isinstance(condition, WildcardMatch):
        params.append(glob_pattern(condition.pattern))
        return f"{column} GLOB ?"
    if isinstance(condition, FuzzyMatch):
        # A word matches at a component start: after the leading space added here, or after
        # the single spaces that separate components in the key.
        tests = []
        for word in condition.words:
            params.append("* " + glob_pattern(word) + "*")
            tests.append(f"(' ' || {column}) GLOB ?")
        return "(" + " AND ".join(tests) + ")"
    raise UnsupportedCondition(f"unknown condition {condition!r}")


# The trigram index finds candidates only through a run of at least three literal characters;
# a shorter pattern would make it read every row, slower than the plain scan.
_MIN_TRIGRAM_RUN = 3


def _literal_run(pattern: str) -> int:
    longest = current = 0
    for ch in pattern:
        current = 0 if ch in "*?" else current + 1
        longest = max(longest, current)
    return longest


def _trigram_prefilter(condition: Condition, column: str, params: list[object]) -> str | None:
    """``st.rowid IN (...)`` from the study text index, for wildcard and fuzzy conditions.

    The index columns hold ``' ' || key``, so the GLOB patterns are those of ``sql_predicate``
    with the leading space; the exact predicate still runs on the rows it lets through.
    """
    table, _, key_column = column.partition(".")
    text_column = STUDY_TEXT_COLUMNS.get(key_column)
    if table != "st" or text_column is None:
        return None
    if isinstance(condition, WildcardMatch):
        pattern = " " + condition.pattern
    elif isinstance(condition, FuzzyMatch):
        pattern = "* " + max(condition.words, key=lambda w: _literal_run(" " + w)) + "*"
    else:
        return None
    if "[" in pattern or _literal_run(pattern) < _MIN_TRIGRAM_RUN:
        return None
    params.append(pattern)
    return f"st.rowid IN (SELECT rowid FROM {STUDY_TEXT_TABLE} WHERE {text_column} GLOB ?)"


# How an extended tag's entity (eqt_value row) joins the searched rows, by the tag's level.
_EXTENDED_SCOPE: dict[QueryLevel, str] = {
    QueryLevel.STUDY: (
        "v.partition_key = st.partition_key AND v.study_uid = st.study_uid"
        " AND v.series_uid = '' AND v.sop_uid = ''"
    ),
    QueryLevel.SERIES: (
        "v.partition_key = se.partition_key AND v.study_uid = se.study_uid"
        " AND v.series_uid = se.series_uid AND v.sop_uid = ''"
    ),
    QueryLevel.INSTANCE: (
        "v.partition_key = i.partition_key AND v.study_uid = i.study_uid"
        " AND v.series_uid = i.series_uid AND v.sop_uid = i.sop_uid"
    ),
}


def _extended_clause(condition: Condition, level: QueryLevel, params: list[object]) -> str:
    """``EXISTS`` over the tag's indexed values (``eqt_value``) for the searched entity."""
    attribute = condition.attribute
    if attribute.level > level:
        raise UnsupportedCondition(f"{attribute.tag} is not searchable at {level.label} level")
    external = attribute.path[:1] == (EXTERNAL_METADATA_PATH,)
    params.append(attribute.tag)
    if attribute.vr in NUMERIC_VRS:
        if not isinstance(condition, ValueMatch):
            raise UnsupportedCondition(f"{attribute.tag} ({attribute.vr}) takes single values")
        params.append(float(condition.key))
        test = "v.num_value = ?"
    else:
        test = sql_predicate(condition, "v.norm_value", params)
    if external:  # study-level values sent as STOW headers
        return (
            "EXISTS (SELECT 1 FROM external_metadata v WHERE v.tag = ?"
            f" AND v.partition_key = st.partition_key AND v.study_uid = st.study_uid AND {test})"
        )
    return (
        "EXISTS (SELECT 1 FROM eqt_value v JOIN extended_query_tag t ON t.tag_key = v.tag_key"
        f" WHERE t.path = ? AND {_EXTENDED_SCOPE[attribute.level]} AND {test})"
    )


RARE_MODALITY_ROWS: dict[QueryLevel, int] = {
    QueryLevel.STUDY: 500,
    QueryLevel.SERIES: 500,
    QueryLevel.INSTANCE: 2000,
}
"""Below this many rows to sort, a ModalitiesInStudy search starts from the modality's series.

A ModalitiesInStudy condition can be answered two ways, and each is slow where the other is
fast. Testing each study (series, instance), newest first, for a series of the modality
(EXISTS, the default) stops after a page of matches: quick for a common modality, but for a
modality that few studies have it tests nearly every row, so its cost grows with the index
(1.5 s for /instances?ModalitiesInStudy=US over 10^6 instances). Starting from the series of
the modality (``series_by_modality_key``) reads the studies (their series, their instances)
that have one and sorts them all: quick when they are few, slow for a common modality.
``modality_probe`` counts those rows up to the level's limit (index lookups, stopped at the
limit) and ``SqliteIndexStore.search`` starts from the series below it. The limits are about
a millisecond of sorting (some 1.5 us a study or series row, 0.7 us an instance row, measured
with benchmarks/scale.py). Above them the newest-first test reads about 100 x rows / matching
rows before it has a page (benchmarks/SCALE.md).
"""

# Per level of the search: the rows that the series route would sort, for each matching series.
_PROBE_JOINS: dict[QueryLevel, str] = {
    QueryLevel.STUDY: "",
    QueryLevel.SERIES: (
        " JOIN series se ON se.partition_key = m.partition_key AND se.study_uid = m.study_uid"
    ),
    QueryLevel.INSTANCE: (
        " JOIN instance i ON i.partition_key = m.partition_key AND i.study_uid = m.study_uid"
    ),
}


def _modality_condition(query: QueryDescription) -> Condition | None:
    """The ModalitiesInStudy condition, when it is one that the series index can seek."""
    for condition in query.conditions:
        attribute = condition.attribute
        if attribute.multiple and attribute.keyword == "ModalitiesInStudy":
            return condition if isinstance(condition, ValueMatch | ListMatch) else None
    return None


def modality_probe(query: QueryDescription, limit: int | None = None) -> CompiledSearch | None:
    """How many rows the series route of the query's ModalitiesInStudy condition would read,
    counted up to ``limit``; None when there is no such condition, or it is a wildcard (which
    no index seeks). A study with several matching series counts several times: an upper
    bound is all the choice needs. ``limit`` defaults to the level's ``RARE_MODALITY_ROWS``."""
    condition = _modality_condition(query)
    if condition is None:
        return None
    if limit is None:
        limit = RARE_MODALITY_ROWS[query.level]
    params: list[object] = []
    inner = sql_predicate(condition, "m.modality_fold", params)
    params.append(query.partition)
    rows = (
        f"SELECT 1 FROM series m{_PROBE_JOINS[query.level]}"
        f" WHERE {inner} AND m.partition_key = ? LIMIT ?"
    )
    return CompiledSearch(sql=f"SELECT count(*) FROM ({rows})", params=(*params, limit))


#: The table a search at each level reads its rows from (the others join it): its partition
#: is the one the search names, its study UID the one a list of studies tests.
_READ_TABLE: dict[QueryLevel, str] = {
    QueryLevel.STUDY: "st",
    QueryLevel.SERIES: "se",
    QueryLevel.INSTANCE: "i",
}


def _partition_clause(query: QueryDescription, *, by_studies: bool = False) -> str:
    """The test that keeps a search in its data partition: nothing of another ever matches.

    SQLite plans without statistics, and an equality on the partition would make it prefer
    any index that leads with the partition (the tables' keys) to the ones QIDO needs: the
    newest-first walk, which stops after a page, and the attribute indexes. So the partition
    is a filter (``+column``: no index is chosen for it), and the plans are those of an
    index without partitions, except where the search names its studies, which the keys
    (partition, study, ...) serve best: a search of one study by its UID, and one that starts
    from the few studies of a rare modality (``by_studies``). Without the partition's
    equality the keys cannot seek those studies, and the search would test every row.
    """
    column = f"{_READ_TABLE[query.level]}.partition_key"
    by_study = any(c.attribute.keyword == "StudyInstanceUID" for c in query.conditions)
    return f"{column} = ?" if by_study or by_studies else f"+{column} = ?"


def _where(query: QueryDescription, params: list[object], rare_modality: bool = False) -> list[str]:
    level = query.level
    params.append(query.partition)
    clauses: list[str] = [_partition_clause(query, by_studies=rare_modality)]
    for condition in query.conditions:
        attribute = condition.attribute
        if attribute.multiple:
            if attribute.keyword != "ModalitiesInStudy":
                raise UnsupportedCondition(f"{attribute.keyword} is not a list in this index")
            inner = sql_predicate(condition, "m.modality_fold", params)
            if rare_modality:  # from the few matching series to their studies
                params.append(query.partition)
                clauses.append(
                    f"{_READ_TABLE[level]}.study_uid IN (SELECT m.study_uid FROM series m"
                    f" WHERE {inner} AND m.partition_key = ?)"
                )
            else:  # any series of the study; EXISTS stops at the first one
                clauses.append(
                    "EXISTS (SELECT 1 FROM series m WHERE m.partition_key = st.partition_key"
                    f" AND m.study_uid = st.study_uid AND {inner})"
                )
            continue
        if attribute.extended:
            clauses.append(_extended_clause(condition, level, params))
            continue
        column = _column(attribute, level)
        prefilter = _trigram_prefilter(condition, column, params)
        if prefilter is not None:
            clauses.append(prefilter)
        clauses.append(sql_predicate(condition, column, params))
    return clauses


_PAGE_SELECT: dict[QueryLevel, str] = {
    QueryLevel.STUDY: (
        "SELECT st.study_uid AS study_uid, NULL AS series_uid, NULL AS sop_uid,"
        " st.latest_watermark AS study_wm, NULL AS series_wm, NULL AS instance_wm,"
        " st.num_series AS study_series, st.num_instances AS study_instances,"
        " st.modalities AS modalities, NULL AS series_instances, st.latest_watermark AS sort_wm"
        " FROM study st"
    ),
    QueryLevel.SERIES: (
        "SELECT se.study_uid AS study_uid, se.series_uid AS series_uid, NULL AS sop_uid,"
        " st.latest_watermark AS study_wm, se.latest_watermark AS series_wm,"
        " NULL AS instance_wm, st.num_series AS study_series,"
        " st.num_instances AS study_instances, st.modalities AS modalities,"
        " se.num_instances AS series_instances, se.latest_watermark AS sort_wm"
        " FROM series se JOIN study st"
        " ON st.partition_key = se.partition_key AND st.study_uid = se.study_uid"
    ),
    QueryLevel.INSTANCE: (
        "SELECT i.study_uid AS study_uid, i.series_uid AS series_uid, i.sop_uid AS sop_uid,"
        " st.latest_watermark AS study_wm, se.latest_watermark AS series_wm,"
        " i.watermark AS instance_wm, st.num_series AS study_series,"
        " st.num_instances AS study_instances, st.modalities AS modalities,"
        " se.num_instances AS series_instances, i.watermark AS sort_wm"
        " FROM instance i"
        " JOIN series se ON se.partition_key = i.partition_key AND se.study_uid = i.study_uid"
        " AND se.series_uid = i.series_uid"
        " JOIN study st ON st.partition_key = i.partition_key AND st.study_uid = i.study_uid"
    ),
}
_ORDER: dict[QueryLevel, str] = {
    QueryLevel.STUDY: "st.latest_watermark",
    QueryLevel.SERIES: "se.latest_watermark",
    QueryLevel.INSTANCE: "i.watermark",
}
_METADATA_JOINS: dict[QueryLevel, tuple[str, str]] = {
    QueryLevel.STUDY: ("sm", "study_wm"),
    QueryLevel.SERIES: ("rm", "series_wm"),
    QueryLevel.INSTANCE: ("im", "instance_wm"),
}
# The largest OFFSET SQLite takes as an integer; anything beyond is past any real index.
MAX_SQL_OFFSET = (1 << 62) - 1


def compile_search(
    query: QueryDescription,
    metadata: frozenset[QueryLevel] = frozenset(),
    *,
    summary: bool = False,
    rare_modality: bool = False,
) -> CompiledSearch:
    """One statement returning the page's identifiers, aggregates and the requested metadata.

    Columns: study_uid, series_uid, sop_uid, study_wm, series_wm, instance_wm, study_series,
    study_instances, modalities, series_instances, sort_wm, then one metadata column per
    level in ``metadata`` (study, series, instance order): the instance's full DICOM JSON, or
    with ``summary`` its ``instance_summary`` document (the default and "all" attributes).
    ``rare_modality``: start from the series matching the ModalitiesInStudy condition, for
    few matches (``RARE_MODALITY_ROWS``); the results are the same either way.
    """
    level = query.level
    params: list[object] = []
    clauses = _where(query, params, rare_modality)
    if level is QueryLevel.INSTANCE:
        clauses.insert(0, f"i.status = {CREATED}")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    page = f"{_PAGE_SELECT[level]}{where} ORDER BY {_ORDER[level]} DESC LIMIT ? OFFSET ?"
    params.extend([query.limit, min(query.offset, MAX_SQL_OFFSET)])
    selected = ["page.*"]
    joins = []
    for wanted in sorted(metadata):
        if wanted > level:
            raise ValueError(f"a {level.label} search has no {wanted.label} metadata")
        alias, key = _METADATA_JOINS[wanted]
        table, column = ("instance_summary", "doc") if summary else ("instance", "metadata")
        selected.append(f"{alias}.{column}")
        joins.append(f" LEFT JOIN {table} {alias} ON {alias}.watermark = page.{key}")
    sql = (
        f"WITH page AS ({page}) SELECT {', '.join(selected)} FROM page{''.join(joins)}"
        " ORDER BY page.sort_wm DESC"
    )
    return CompiledSearch(sql=sql, params=tuple(params))
