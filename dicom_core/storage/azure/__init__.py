"""The azure storage adapters: Cosmos DB (NoSQL API) index, Blob Storage files, Storage queues.

They implement the same ports as the local backend (``dicom_core.storage.ports``) and pass the
same contract tests, against Azurite and a Cosmos DB server in tests and against real accounts
in Azure. This package is the only place in ``dicom_core`` that imports ``azure.*`` SDKs.

- ``clients``: credentials and SDK clients from the settings (connection strings for the
  emulators, ``DefaultAzureCredential`` with the Functions identity-based names in Azure).
- ``retry``: one retry policy and one translation of SDK errors to the ports' exceptions, so
  that an unreachable store is a 503 (``StorageUnavailable``), never a 500.
- ``cosmos_schema``: containers, partition keys and indexing policies, declared once.
- ``cosmos_session``: the one Cosmos DB session every Cosmos store runs on (containers,
  retries, container recreation, counters, reading DICOM JSON back); ``cosmos_io``: point
  reads, queries and ETag-guarded writes.
- ``cosmos_index``: ``IndexStore`` writes on Cosmos DB, with ``cosmos_propagation`` (summary
  keys to their copies) and ``cosmos_index_reads``; ``cosmos_query``: QIDO compiled to Cosmos
  SQL; ``cosmos_docs``: the documents a write produces.
- ``cosmos_eqt``: ``QueryTagStore`` (extended query tags, reindex operations);
  ``cosmos_extended_values``: their values and external metadata values, and QIDO over them;
  ``cosmos_external_metadata``: ``ExternalMetadataStore``; ``cosmos_workitems``:
  ``WorkitemStore``.
- ``blob_store``: ``BlobStore`` on Blob Storage; ``storage_queue``: ``JobQueue`` on Storage
  queues, in the base64 message format the Functions queue trigger reads.
- ``factory``: the complete azure ``Backend`` from the settings.
"""
