"""QIDO-RS search semantics, independent of any storage backend.

``parser`` turns a query string into a ``conditions.QueryDescription``; ``matching`` is the
reference meaning of every condition; ``attributes`` holds the tables of the conformance
statement (searchable attributes per level, default and "all" response attributes). Each
index adapter compiles a description to its own query language and must agree with
``matching`` (tests/property/test_query_compiler.py checks the SQLite one).
"""
