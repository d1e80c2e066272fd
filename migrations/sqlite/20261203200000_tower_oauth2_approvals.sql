-- tower-oauth2: client contacts and approval decisions.
--
-- `contacts`: the e-mail addresses told when a registration is approved or rejected (a JSON
-- array, like the other lists). `oauth2_approval_decisions`: one decision per approver and
-- client (approve or reject, the approver groups it counted for, an optional comment), written
-- in the same transaction as the status change it settles.
ALTER TABLE oauth2_clients ADD COLUMN contacts TEXT NOT NULL DEFAULT '[]';

CREATE TABLE oauth2_approval_decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    decision TEXT NOT NULL,
    groups TEXT NOT NULL,
    comment TEXT,
    decided_at INTEGER NOT NULL,
    UNIQUE (client_id, approver)
) STRICT;
