-- tower-oauth2: resource indicators (RFC 8707).
--
-- `resources`: the resource URIs a grant is for (a JSON array, like the other lists), kept on
-- its authorization code and on its tokens. An access token's are its audiences; a refresh
-- token's bound what later refreshes may ask for. Empty: the server's default audience.
ALTER TABLE oauth2_codes ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
ALTER TABLE oauth2_tokens ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
