"""``python -m functions_host``: serve the app in the working directory (``make run``)."""

from functions_host.serve import main

main()
