-- tower-oauth2 SqliteStore: the client change feed.
--
-- Every change to a client (update, delete) appends its id, in the same transaction. Instances
-- read the feed with their revocation sync and drop those clients from their caches. Rows are
-- purged an hour after the change: a cache entry lives far shorter.
CREATE TABLE oauth2_client_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

CREATE INDEX oauth2_client_changes_time ON oauth2_client_changes (changed_at);
