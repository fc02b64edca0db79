"""incentives: credits and coupons on Temporal and PostgreSQL.

The layers, each importing only the ones below it (checked by `lint-imports` in `./dev test`):

    client.py  worker.py  benchmarks/  examples/   entry points: thin shells
    incentives.cli                                   the `incentives` command (one module per command group)
    incentives.app | incentives.devstack             use cases: the typed client, reads, replay, the worker
                                                     | the embedded Temporal and Postgres servers
    workflows                                        deterministic orchestration: time and transitions
    activities                                       the only writers of value (Postgres)
    incentives.adapters                              I/O: Postgres pool and rows, migrations, settings,
                                                     logs, the Temporal seam
    incentives.domain                                pure: money, durations, rules, errors, models

No re-exports here: an `__init__` importing a higher layer would recreate the cycles the layers forbid.
"""
