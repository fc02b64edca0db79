"""The CLI's exit codes, one per family of outcome (`incentives.domain.errors`)."""

EXIT_OK = 0
EXIT_REJECTED = 1  # refused by the business rules; or, for `replay`, a history the code diverges from
EXIT_BAD_INPUT = 2  # which field, why; nothing was sent or written
EXIT_UNAVAILABLE = 3  # Temporal or Postgres cannot be reached, or the outcome is unknown (retry with the same ids)
EXIT_INTERNAL = 4  # a bug: one line for the user, the traceback in the log
# `reconcile --last` when the schedule has recorded nothing yet: not a failure of the books (1), nor
# of the servers (3); a script waiting for the first scheduled result can tell it apart.
EXIT_NOTHING_RECORDED = 5
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
