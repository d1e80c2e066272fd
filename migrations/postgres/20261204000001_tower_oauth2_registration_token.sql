-- tower-oauth2: dynamic client registration (RFC 7591, RFC 7592).
--
-- `registration_token_hash`: the digest (`sha256:…`) of the registration access token a
-- dynamically registered client manages its registration with; NULL for other clients.
ALTER TABLE oauth2_clients ADD COLUMN registration_token_hash TEXT;
