"""The query description: what a QIDO-RS search asks for, with no backend in it.

``parser.parse_query`` builds a ``QueryDescription`` from a query string; each index adapter
compiles it to its own language (``storage/local/sqlite_query.py`` to SQLite SQL, the azure
adapter to Cosmos SQL). Keeping one description means the conformance rules are decided once,
in the parser and in ``matching.py``, and a compiler only translates.

How a compiler reads a description (``matching.py`` is the executable form of this contract,
and a compiler is correct when it returns what ``matching.matches`` accepts):

* The index keeps, for every searchable attribute, a *key* of the stored value next to the
  value: ``matching.index_key(attribute, value)``. Conditions carry keys too, already
  normalised, so a compiler compares keys with plain binary string comparison and never
  folds case itself. The key depends on ``QueryAttribute.matching``:

  - ``EXACT``: the value itself (UIDs; DA as ``YYYYMMDD``; TM and DT as fixed-width
    canonical strings, see ``matching.time_key`` and ``matching.datetime_key``).
  - ``CASE_INSENSITIVE``: ``str.casefold`` of the value; accents stay significant.
  - ``PERSON_NAME``: case-folded, accents removed, name components and groups separated by
    single spaces (``"Müller^Hans"`` -> ``"muller hans"``).

* Condition kinds, all on one attribute, all ANDed together:

  - ``ValueMatch(key)``: stored key == key.
  - ``ListMatch(keys)``: stored key is one of keys (UID lists; modality lists).
  - ``RangeMatch(lower, upper)``: lower <= stored key <= upper, inclusive; a ``None`` bound
    is open (never both). Keys are fixed-width, so string order is time order. An empty
    stored key never matches.
  - ``WildcardMatch(pattern)``: the whole stored key matches ``pattern``, where ``*`` is any
    run of characters (also none) and ``?`` exactly one character; everything else is
    literal. (SQLite: ``GLOB`` with ``[`` escaped as ``[[]``. Cosmos: a ``RegexMatch`` on the
    translated pattern, or ``STARTSWITH`` when the pattern is ``prefix*``.)
  - ``FuzzyMatch(words)``: every word matches at the start of some name component: for
    each word ``w`` there is a position ``i`` that is 0 or follows a space in the stored key
    with ``key[i:]`` matching the wildcard pattern ``w + "*"``. Words have no spaces.

* ``QueryAttribute.multiple``: the stored value is a list (ModalitiesInStudy, the set of
  series modalities of a study); the condition holds when any element satisfies it.
* ``QueryAttribute.level`` says which entity holds the value. Study and series values are
  those of the study's or series' latest stored instance (the index's summaries). A
  series-level search may test study-level attributes (the series' study), an
  instance-level search study- and series-level ones.
* Results come newest first: ordered by the watermark of the result entity's latest stored
  instance (its own watermark for instances), descending; then ``offset``, then ``limit``.
* ``study_uid`` and ``series_uid`` are the UIDs of the resource URL. They are *also* present
  as ``ValueMatch`` conditions, so a compiler needs only the conditions; a backend may use
  them to pick a partition.
* Extended query tags (a later issue) become ``QueryAttribute`` entries with
  ``extended=True`` and their path and private creator; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from dicom_core.errors import BadRequest


class QueryLevel(IntEnum):
    """A level of the DICOM hierarchy; the order is coarse to fine."""

    STUDY = 0
    SERIES = 1
    INSTANCE = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class QueryResource(Enum):
    """The six QIDO-RS resources of the conformance statement."""

    ALL_STUDIES = "studies"
    ALL_SERIES = "series"
    ALL_INSTANCES = "instances"
    STUDY_SERIES = "study's series"
    STUDY_INSTANCES = "study's instances"
    STUDY_SERIES_INSTANCES = "study series' instances"

    @property
    def level(self) -> QueryLevel:
        """The level of the entities returned."""
        return _RESOURCE_LEVEL[self]

    @property
    def levels(self) -> frozenset[QueryLevel]:
        """Levels whose attributes may be searched, and whose attributes are returned.

        The conformance statement's table gives both: All Series adds study attributes, All
        Instances study and series ones, Study's Instances series ones; a resource scoped by
        the URL never searches or returns the levels the URL already fixes.
        """
        return _RESOURCE_LEVELS[self]


_RESOURCE_LEVEL = {
    QueryResource.ALL_STUDIES: QueryLevel.STUDY,
    QueryResource.ALL_SERIES: QueryLevel.SERIES,
    QueryResource.ALL_INSTANCES: QueryLevel.INSTANCE,
    QueryResource.STUDY_SERIES: QueryLevel.SERIES,
    QueryResource.STUDY_INSTANCES: QueryLevel.INSTANCE,
    QueryResource.STUDY_SERIES_INSTANCES: QueryLevel.INSTANCE,
}
_RESOURCE_LEVELS = {
    QueryResource.ALL_STUDIES: frozenset({QueryLevel.STUDY}),
    QueryResource.ALL_SERIES: frozenset({QueryLevel.STUDY, QueryLevel.SERIES}),
    QueryResource.ALL_INSTANCES: frozenset(QueryLevel),
    QueryResource.STUDY_SERIES: frozenset({QueryLevel.SERIES}),
    QueryResource.STUDY_INSTANCES: frozenset({QueryLevel.SERIES, QueryLevel.INSTANCE}),
    QueryResource.STUDY_SERIES_INSTANCES: frozenset({QueryLevel.INSTANCE}),
}


class TextMatching(Enum):
    """How values of an attribute compare (conformance statement, "Search matching" notes)."""

    EXACT = "exact"
    CASE_INSENSITIVE = "case-insensitive"
    PERSON_NAME = "person-name"


# ``QueryAttribute.path`` of an external-metadata attribute (STOW msdicom-meta-* headers) starts
# with this marker; index adapters look its values up in their external-metadata store.
EXTERNAL_METADATA_PATH = "msdicom-meta"


@dataclass(frozen=True, slots=True)
class QueryAttribute:
    """A searchable attribute: what it is, where its value lives, how it compares.

    ``tag`` is the 8-hex-digit uppercase tag of DICOM JSON (``"00100010"``). ``multiple``
    marks a list-valued index entry (ModalitiesInStudy). ``extended``, ``path`` and
    ``private_creator`` describe an extended query tag; core attributes leave them unset.
    """

    tag: str
    keyword: str
    vr: str
    level: QueryLevel
    matching: TextMatching
    multiple: bool = False
    extended: bool = False
    path: tuple[str, ...] = ()
    private_creator: str | None = None


@dataclass(frozen=True, slots=True)
class ValueMatch:
    attribute: QueryAttribute
    key: str


@dataclass(frozen=True, slots=True)
class ListMatch:
    attribute: QueryAttribute
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RangeMatch:
    attribute: QueryAttribute
    lower: str | None
    upper: str | None


@dataclass(frozen=True, slots=True)
class WildcardMatch:
    attribute: QueryAttribute
    pattern: str


@dataclass(frozen=True, slots=True)
class FuzzyMatch:
    attribute: QueryAttribute
    words: tuple[str, ...]


Condition = ValueMatch | ListMatch | RangeMatch | WildcardMatch | FuzzyMatch


@dataclass(frozen=True, slots=True)
class IncludeFields:
    """``includefield``: extra attributes to return (tags), or every attribute of the levels."""

    all: bool = False
    tags: tuple[str, ...] = ()


DEFAULT_LIMIT = 100
MAX_LIMIT = 200


@dataclass(frozen=True, slots=True)
class QueryDescription:
    """One QIDO-RS search, parsed and checked: the contract between parser and compilers."""

    resource: QueryResource
    partition: int
    """The data partition searched; nothing outside it matches."""
    conditions: tuple[Condition, ...] = ()
    include: IncludeFields = IncludeFields()
    fuzzy: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    study_uid: str | None = None
    series_uid: str | None = None
    returned_tags: tuple[str, ...] = ()
    """Tags to return although no condition tests them (universal matching, ``Key=*``)."""

    @property
    def level(self) -> QueryLevel:
        return self.resource.level


class UnsupportedCondition(BadRequest):
    """A condition an index adapter cannot evaluate: the query is refused with a 400 that says
    why, rather than answered wrongly. Raised by the compilers, never by the parser."""
