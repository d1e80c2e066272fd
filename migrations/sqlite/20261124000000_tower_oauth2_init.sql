-- tower-oauth2 SqliteStore: the initial schema.
--
-- Lists are JSON arrays in TEXT, digests 32-byte BLOBs, times whole seconds since the Unix
-- epoch, lifetimes their canonical text (`1h 30min`, `unlimited`), enums their `as_str`.

-- Clients, in registration order (`seq`).
CREATE TABLE oauth2_clients (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    scopes TEXT NOT NULL,
    default_scopes TEXT NOT NULL,
    access_token_lifetime TEXT,
    refresh_token_lifetime TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- Authorization codes, by the SHA-256 of their value.
CREATE TABLE oauth2_codes (
    hash BLOB NOT NULL PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    subject TEXT NOT NULL,
    scopes TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    family_id TEXT NOT NULL,
    used INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX oauth2_codes_client ON oauth2_codes (client_id);
CREATE INDEX oauth2_codes_expiry ON oauth2_codes (expires_at);

-- Access tokens (by `jti`) and refresh tokens (by a random id, found by `hash`).
CREATE TABLE oauth2_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    hash BLOB UNIQUE,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    family_id TEXT,
    scopes TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER,
    state TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX oauth2_tokens_client ON oauth2_tokens (client_id, issued_at, id);
CREATE INDEX oauth2_tokens_family ON oauth2_tokens (family_id) WHERE family_id IS NOT NULL;
CREATE INDEX oauth2_tokens_expiry ON oauth2_tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX oauth2_tokens_revoked_access ON oauth2_tokens (issued_at, id)
    WHERE kind = 'access_token' AND state = 'revoked';

-- Revoked refresh-token families, remembered until `until` (NULL: forever).
CREATE TABLE oauth2_revoked_families (
    family_id TEXT NOT NULL PRIMARY KEY,
    until INTEGER
) STRICT, WITHOUT ROWID;

-- Every access-token revocation, in order; `seq` is the cursor of `revocations_since`.
-- AUTOINCREMENT: a sequence number is never reused, even after the newest rows are purged.
CREATE TABLE oauth2_revocation_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL,
    expires_at INTEGER
) STRICT;

CREATE INDEX oauth2_revocation_log_expiry ON oauth2_revocation_log (expires_at)
    WHERE expires_at IS NOT NULL;

-- Signing keys, oldest first (`seq`); at most one is active.
CREATE TABLE oauth2_signing_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kid TEXT NOT NULL UNIQUE,
    algorithm TEXT NOT NULL,
    private_key BLOB NOT NULL,
    encrypted INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    active INTEGER NOT NULL,
    retired_until INTEGER
) STRICT;

CREATE UNIQUE INDEX oauth2_signing_keys_one_active ON oauth2_signing_keys (active)
    WHERE active = 1;
