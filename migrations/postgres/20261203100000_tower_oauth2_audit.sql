-- tower-oauth2 PostgresStore: the persistent audit log.
--
-- One row per audit event (token issued or refused, failed client authentication, revocation,
-- admin action), appended by each instance's audit writer. Never a secret or a token value: the
-- detail holds ids (jti, family), scopes, grant types and error codes. `seq` orders the log
-- and is the cursor of its pages; rows are purged by age and count by the housekeeping.
CREATE TABLE oauth2_audit (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    client_id TEXT COLLATE "C",
    actor TEXT,
    detail TEXT NOT NULL
);

CREATE INDEX oauth2_audit_client ON oauth2_audit (client_id, seq);
CREATE INDEX oauth2_audit_kind ON oauth2_audit (kind, client_id, at);
CREATE INDEX oauth2_audit_time ON oauth2_audit (at);
