"""A local stand-in for the Azure Functions host, driving the app through Azure's own runtime.

Core Tools cannot be installed everywhere, so ``make run`` and the end-to-end tests serve the
app with this package instead. It does what the .NET host does and nothing more:

- ``worker``: drives ``azure-functions-runtime`` (the package Azure's proxy worker loads from
  Python 3.13 on) through its protocol calls: worker init, function metadata (the runtime's
  own indexing of ``function_app.py``), function load and invocations;
- ``http``: routes each request as the host does (``dicom_core.web.routing``: function-name
  order, first template-and-method match) and forwards it to the runtime's own HTTP-streams
  server with an invocation id and X-Forwarded-* headers, bodies streaming both ways;
- ``queues``: delivers queue messages to the queue-triggered functions with the host's trigger
  metadata, retries and poison queue;
- ``serve``: the processes, ports and signals of ``make run``.

One addition that is no part of the Functions host: with ``DICOM_VIEWER=true`` the host also
serves the OHIF Viewer at ``/viewer`` (``viewer``, installed by ``ohif``), so that ``make run``
shows stored studies in a browser. The app never sees those requests.

Where this stand-in cannot behave like Azure, the difference is written next to the code.
Nothing here is deployed (``.funcignore``).
"""
