"""The web layer: the only code that knows HTTP.

``function_app.py`` calls the HTTP handlers of this package's modules directly, one module per
transaction family (``stow``, ``wado``, ``metadata``, ``frames``, ``rendered``, ``qido``,
``delete``, ``extended_query_tags``, ``workitems``), each through ``context.handle``: the one
place that puts a handler behind the gate (CORS, token) and maps errors to status codes. No
forwarding functions stand in between, so a route leads straight to its handler. The
queue-triggered handlers are not HTTP: they live in ``dicom_core.jobs``.
"""
