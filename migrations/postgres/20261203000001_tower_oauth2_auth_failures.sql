-- Failed client (and resource-owner) authentications, counted by every instance: one row per
-- rate-limiter key (`client:<id>`, `peer:<address>`, `user:<digest>`), its current fixed
-- window and the failures in it. Times are milliseconds since the Unix epoch by the
-- database's clock, so that instances with skewed clocks share one window. `updated_at` is
-- the last failure; instances read the keys that reached the limit since their last sync.
-- Rows whose window has ended are deleted by `purge_expired`.
CREATE TABLE oauth2_auth_failures (
    key TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    count BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX oauth2_auth_failures_updated ON oauth2_auth_failures (updated_at);
CREATE INDEX oauth2_auth_failures_window_end ON oauth2_auth_failures (window_end);
