-- tower-oauth2: DPoP (RFC 9449).
--
-- `dpop_jkt`: the RFC 7638 thumbprint of a DPoP key. On a code, the `dpop_jkt` of its
-- authorization request, which the redemption's proof must match; on an access token, its
-- `cnf.jkt`; on a public client's refresh token, the key every refresh must prove.
ALTER TABLE oauth2_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE oauth2_tokens ADD COLUMN dpop_jkt TEXT;
