"""The HTTP edge: the API checkout, support and campaign tools call, beside the CLI and like it a
thin layer over the app: it reads requests into the app's models, checks the caller's key and
scopes, calls the app, and writes its answers and refusals on the wire (problem+json). It decides
nothing the app decides. `python -m incentives.http` (which `incentives api` becomes) serves it.
"""
