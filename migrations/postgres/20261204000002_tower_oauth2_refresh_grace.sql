-- tower-oauth2: the refresh-token grace window.
--
-- On a rotated-out refresh token's row, written with the rotation: the answer to that refresh
-- (the new token pair), sealed under a key derived from the rotated-out token's value, which
-- the store never holds; and when it was rotated. NULL when the window is off.
ALTER TABLE oauth2_tokens ADD COLUMN successor BYTEA;
ALTER TABLE oauth2_tokens ADD COLUMN rotated_at BIGINT;
