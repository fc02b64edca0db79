-- The HTTP API's keys (`incentives api-key create`). A key is shown once, when it is created, and
-- stored only as the SHA-256 of its text: a key is 256 random bits, so a fast hash is enough (no
-- guessing to slow down), and a copy of this table lets nobody call the API. Revoking a key sets
-- revoked_at; the API looks the key up on every request, so a revocation holds from the next one.
-- A name is unique among the keys in use; a revoked key keeps its row (who had access, and when).
-- Nothing is granted to incentives_worker: the worker never reads or writes keys.

CREATE TABLE api_keys (
    key_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$'),
    key_hash   bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    scopes     text[] NOT NULL
               CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY['checkout', 'grant', 'promotions', 'read']),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT revoked_after_created CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);
CREATE UNIQUE INDEX api_keys_name_in_use ON api_keys (name) WHERE revoked_at IS NULL;
