-- tower-oauth2 SqliteStore: the persistent audit log.
--
-- One row per audit event (token issued or refused, failed client authentication, revocation,
-- admin action), appended by the server's audit writer. Never a secret or a token value: the
-- detail holds ids (jti, family), scopes, grant types and error codes. `seq` orders the log
-- and is the cursor of its pages; rows are purged by age and count by the housekeeping.
CREATE TABLE oauth2_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    client_id TEXT,
    actor TEXT,
    detail TEXT NOT NULL
) STRICT;

CREATE INDEX oauth2_audit_client ON oauth2_audit (client_id, seq);
CREATE INDEX oauth2_audit_kind ON oauth2_audit (kind, client_id, at);
CREATE INDEX oauth2_audit_time ON oauth2_audit (at);
