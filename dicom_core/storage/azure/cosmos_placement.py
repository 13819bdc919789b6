"""Where a data partition's documents live on Cosmos DB: the one module that knows both layouts.

Two layouts hold the index (``cosmos_schema``, docs/azure-backend.md):

- Microsoft.Default stays in the ``index`` container exactly as before partitions existed:
  partition key ``/pk`` = the StudyInstanceUID, documents without ``dp``. Data stored before
  partitions needs no change, and with partitions off nothing differs.
- Every other partition's documents go to the ``partitioned`` container, whose hierarchical
  key is ``[dp, pk]``: ``dp`` the partition's key as a string, ``pk`` the study. A study's
  documents still share one logical partition (transactional batches are unchanged), and a
  search of one partition across its studies names the prefix ``[dp]``, which Cosmos routes to
  the physical partitions that hold that partition instead of every one.

The documents a partition owns in the ``system`` container (pending changes sequenced into
feed entries, extended query tag values and errors, external metadata) carry ``dp`` too when
they are not Microsoft.Default's; Microsoft.Default's keep their old shape, without ``dp``.

The Cosmos DB server of the tests ignores the partition key of a query and answers from every
document of the container, so every query names its scope in its text as well: ``c.pk`` and
``c.dp`` in the ``partitioned`` container; in ``system``, ``c.dp`` or ``NOT IS_DEFINED(c.dp)``.
The ``index`` container holds Microsoft.Default's documents only, so its queries need no such
test and stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY

DATA_PARTITION_FIELD = "dp"


class Containers(Protocol):
    """The index containers of a session (``cosmos_session.Containers``, which imports this
    module: so it is named by shape here)."""

    @property
    def index(self) -> Any: ...

    @property
    def partitioned(self) -> Any: ...


PartitionKeyValue = str | list[str]
"""A full partition key: the study (``index``), or ``[dp, study]`` (``partitioned``)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the documents of one data partition (its key) are kept."""

    partition: int

    @property
    def default(self) -> bool:
        return self.partition == DEFAULT_PARTITION_KEY

    @property
    def dp(self) -> str:
        """The partition's key as documents of the ``partitioned`` container carry it."""
        return str(self.partition)

    def container(self, c: Containers) -> Any:
        """The container of the partition's index documents."""
        return c.index if self.default else c.partitioned

    def key(self, study_uid: str) -> PartitionKeyValue:
        """The full partition key of a study's documents in ``container``."""
        return study_uid if self.default else [self.dp, study_uid]

    def scope(self) -> list[str] | None:
        """The partition key a query across the partition's studies names: none (the whole
        ``index`` container is Microsoft.Default's), or the prefix ``[dp]``."""
        return None if self.default else [self.dp]

    def where(self, params: dict[str, object]) -> str | None:
        """The test that keeps a query of ``container`` to this partition (None: the ``index``
        container holds nothing else); adds its parameter ``@dp`` to ``params``."""
        if self.default:
            return None
        params["@dp"] = self.dp
        return "c.dp = @dp"

    def system_where(self, params: dict[str, object]) -> str:
        """The test that keeps a query of ``system`` documents of several partitions (feed
        entries, values) to this partition's: Microsoft.Default's carry no ``dp``."""
        if self.default:
            return f"NOT IS_DEFINED(c.{DATA_PARTITION_FIELD})"
        params["@dp"] = self.dp
        return f"c.{DATA_PARTITION_FIELD} = @dp"

    def fields(self) -> dict[str, str]:
        """What every document of this partition carries beside its own fields."""
        return {} if self.default else {DATA_PARTITION_FIELD: self.dp}

    def study(self, study_uid: str) -> PlacedStudy:
        return PlacedStudy(self, study_uid)

    def values_partition(self, study_uid: str) -> str:
        """The ``system`` logical partition of a study's extended query tag and external
        metadata values: ``v|{study}`` for Microsoft.Default, as ever, and ``v|{dp}|{study}``
        for the others (a UID has no ``|``, so the two never meet). A QIDO condition on such
        a value queries ``system`` across its partitions, Microsoft.Default's included, with
        ``system_where``; keeping the values of other partitions under ``[dp, ...]`` in the
        ``partitioned`` container would scope that query to the partition (not done yet)."""
        return f"v|{study_uid}" if self.default else f"v|{self.dp}|{study_uid}"


def placement_of(partition: int) -> Placement:
    return Placement(partition)


def document_placement(doc: Any) -> Placement:
    """The placement of a document read from any container (``dp`` absent: the default)."""
    dp = doc.get(DATA_PARTITION_FIELD)
    return Placement(int(dp) if dp else DEFAULT_PARTITION_KEY)


@dataclass(frozen=True, slots=True)
class PlacedStudy:
    """One study of one data partition: its container, its partition key, its query scope."""

    placement: Placement
    uid: str

    @property
    def partition(self) -> int:
        return self.placement.partition

    @property
    def key(self) -> PartitionKeyValue:
        return self.placement.key(self.uid)

    def container(self, c: Containers) -> Any:
        return self.placement.container(c)

    def where(self, params: dict[str, object]) -> str:
        """``c.pk = @pk`` (and ``c.dp = @dp`` outside ``index``), parameters added."""
        params["@pk"] = self.uid
        dp = self.placement.where(params)
        return "c.pk = @pk" if dp is None else f"c.pk = @pk AND {dp}"

    def fields(self) -> dict[str, str]:
        """The key fields of every document of the study."""
        return {"pk": self.uid, **self.placement.fields()}

    def __str__(self) -> str:
        return self.uid if self.placement.default else f"{self.uid} (partition {self.partition})"
