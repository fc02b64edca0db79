"""Every `workflow.patched` id, in one place: each names a change to running workflow code, and is
held in the histories of the runs that took it, so none is ever renamed or reused.

A run recorded before a patch replays on the old branch; a run started after it takes the new one.
Why each change was made is in `docs/decisions/`; the corpus under `tests/replay/histories/` keeps
a generation of histories from before each patch, and `./dev test` replays them all.
"""

# -- the wallet ---------------------------------------------------------------------------------
# Ledger calls on a caller's path are local activities (before: regular activities, 30 s deadline).
LOCAL_LEDGER_CALLS = "local-ledger-calls"
# The first operation of a run started without memory loads the memory in its own ledger call.
FIRST_CALL_LOADS = "first-call-loads"
# Redeems that arrive while the ledger call is busy go to the ledger together (`redeem_together`).
BATCHED_REDEEMS = "batched-redeems"

# -- the promotion ------------------------------------------------------------------------------
# Two batches in flight while far from the promotion's limits (before: one at a time).
PAIRED_BATCHES = "paired-batches"
# Batches in flight are watched, not awaited blindly: a control that stops granting (pause,
# cancel) cancels them, and a batch the database refuses for good stops granting as `failed`
# (before: a refused batch failed the workflow, and a control waited for the batch to finish).
STEERABLE_BATCHES = "steerable-batches"
# `cancel --revoke-outstanding` on a promotion already cancelled without it revokes (before: it
# answered and did nothing).
REVOKE_AFTER_CANCEL = "revoke-after-cancel"
