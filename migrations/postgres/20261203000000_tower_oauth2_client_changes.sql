-- tower-oauth2 PostgresStore: the client change feed.
--
-- Every change to a client (update, delete) appends its id, in the same transaction, and
-- notifies the revocation channel at commit. Instances read the feed with their revocation
-- sync and drop those clients from their caches. Rows are purged an hour after the change: a
-- cache entry lives far shorter.
CREATE TABLE oauth2_client_changes (
    seq BIGSERIAL PRIMARY KEY,
    client_id TEXT COLLATE "C" NOT NULL,
    changed_at BIGINT NOT NULL
);

CREATE INDEX oauth2_client_changes_time ON oauth2_client_changes (changed_at);
