"""Plain code the tests share: helpers that are imported, never fixtures.

Fixtures and hooks stay in the ``conftest.py`` files and build on what lives here; a test
module imports from ``tests.support``, never from a ``conftest``. One module per job:

- ``server``: a real server process (the local host as ``make run`` starts it), the backends
  the session runs on, the azure settings of a server on the emulators;
- ``factories``: small DICOM instances and multipart bodies made with pydicom;
- ``tutorial_files``: the curl tutorial's three sample files, made on the spot;
- ``index_rows``: index rows committed straight into an ``IndexStore``, without DICOM files;
- ``services``: the local backend's services, wired as the app wires them, without HTTP;
- ``stores``: a backend's ports as the contract suites see them, with back doors;
- ``azure_backdoor``: raw Blob, Cosmos and queue reads of what the azure adapters wrote;
- ``memory``: peak resident memory of a server while a block runs;
- ``curl``, ``wado``, ``ups``: the requests and answers of the end-to-end tests (curl
  commands replayed from the spec documents, WADO-RS sample files, UPS-RS workitems).

The in-memory fakes of the storage ports are a package of their own, ``tests.fakes``.
"""
