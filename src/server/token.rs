//! The token endpoint (RFC 6749 §3.2): client credentials, refresh with rotation and reuse
//! detection, authorization code with PKCE, and the password grant behind an app hook.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::http::{OAuthError, Params, json_response, parse_scope, random_token};
use super::store::{
    ClientRecord, GrantType, IssueOutcome, StoreError, Successor, TokenHash, TokenIssue, TokenKind,
    TokenRecord, TokenState,
};
use super::{HookFuture, ServerState, TokenLifetime, audit, client_auth};
use crate::time;

/// Checks a resource owner's username and password for the `password` grant (RFC 6749 §4.3).
///
/// The password grant is a legacy grant (the OAuth 2.0 Security BCP forbids it): it hands the
/// user's password to the client. It is off unless the app supplies a verifier with
/// [`password_verifier`](super::AuthorizationServerBuilder::password_verifier), and each client
/// must also be registered for it. Prefer the authorization-code grant.
pub trait PasswordVerifier: Send + Sync + 'static {
    /// The subject (`sub`) of the user these credentials belong to, or `None` if they are
    /// wrong. Compare passwords in constant time (a password-hashing crate does).
    fn verify<'a>(&'a self, username: &'a str, password: &'a str)
    -> HookFuture<'a, Option<String>>;
}

/// `POST /token`.
pub(crate) async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut context = Context::default();
    match token(&state, &parts, body, &mut context).await {
        Ok(response) => response,
        Err(error) => {
            audit::token_refused(
                &state.audit,
                context.grant,
                context.client.as_deref(),
                &error,
            );
            error.into_response()
        }
    }
}

/// What is known of a refused request, for its audit event.
#[derive(Default)]
struct Context {
    grant: Option<&'static str>,
    client: Option<String>,
}

const MAX_BODY: usize = 64 * 1024;

async fn token(
    state: &ServerState,
    parts: &http::request::Parts,
    body: axum::body::Body,
    context: &mut Context,
) -> Result<Response, OAuthError> {
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| OAuthError::invalid_request("request body too large or unreadable"))?;
    let params = Params::from_body(&parts.headers, &body, state.accept_json)?;
    // Checked once, before any retry below: checking it records its jti.
    let jkt = dpop_proof(state, parts)?;
    let jkt = jkt.as_deref();
    // A code is redeemed once, so that grant cannot run twice: it authenticates against the
    // store. The others take the client from the cache, and run once more, against the
    // store, if the client turns out to have changed when their tokens are stored.
    let cache = (params.get("grant_type") != Some("authorization_code")).then_some(&state.clients);
    match grant(state, parts, params, cache, jkt, context).await {
        Err(Refused::ClientChanged(client_id)) if cache.is_some() => {
            state.clients.invalidate(&client_id);
            let params = Params::from_body(&parts.headers, &body, state.accept_json)?;
            match grant(state, parts, params, None, jkt, context).await {
                Err(Refused::ClientChanged(_)) => Err(client_changed()),
                other => other.map_err(Refused::into_oauth),
            }
        }
        other => other.map_err(Refused::into_oauth),
    }
}

/// The thumbprint of the key of the request's DPoP proof (RFC 9449 §5), if it has one: the
/// proof must be for `POST` to this token endpoint, fresh, unused, and carry this server's
/// nonce when nonces are on.
fn dpop_proof(
    state: &ServerState,
    parts: &http::request::Parts,
) -> Result<Option<String>, OAuthError> {
    if !parts.headers.contains_key(crate::dpop::DPOP) {
        return Ok(None);
    }
    let checker = &state.dpop;
    let now = time::now();
    match checker.check(&parts.headers, &parts.method, checker.base(), None, now) {
        Ok(proof) => Ok(Some(proof.jkt().to_owned())),
        Err(error) => match (error.kind(), checker.nonces()) {
            (crate::error::AuthErrorKind::UseDpopNonce, Some(nonces)) => Err(
                OAuthError::use_dpop_nonce(error.description(), nonces.issue(now)),
            ),
            _ => Err(OAuthError::invalid_dpop_proof(error.description())),
        },
    }
}

/// Why a grant issued nothing.
enum Refused {
    /// Answered with this error.
    OAuth(OAuthError),
    /// The client's stored record is not the one the request authenticated with: it changed
    /// (or was disabled or deleted) meanwhile, and nothing was stored.
    ClientChanged(String),
}

impl Refused {
    fn into_oauth(self) -> OAuthError {
        match self {
            Refused::OAuth(error) => error,
            Refused::ClientChanged(_) => client_changed(),
        }
    }
}

impl From<OAuthError> for Refused {
    fn from(error: OAuthError) -> Self {
        Refused::OAuth(error)
    }
}

impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        Refused::OAuth(error.into())
    }
}

fn client_changed() -> OAuthError {
    OAuthError::invalid_client("client is no longer approved")
}

/// Authenticates the client and runs the grant the request names.
async fn grant(
    state: &ServerState,
    parts: &http::request::Parts,
    mut params: Params,
    cache: Option<&client_auth::ClientCache>,
    jkt: Option<&str>,
    context: &mut Context,
) -> Result<Response, Refused> {
    let client =
        client_auth::authenticate(state, cache, parts, &mut params, client_auth::Clients::All)
            .await?;
    context.client = Some(client.client_id.clone());
    let grant_name = params.require("grant_type")?;
    let grant = GrantType::parse(grant_name).ok_or_else(|| {
        OAuthError::unsupported_grant_type("grant_type is not one this server supports")
    })?;
    context.grant = Some(grant.as_str());
    let enabled = match grant {
        GrantType::Password => state.password.is_some(),
        GrantType::AuthorizationCode => state.consent.is_some(),
        _ => true,
    };
    if !enabled {
        return Err(OAuthError::unsupported_grant_type(format!(
            "the {} grant is not enabled on this server",
            grant.as_str()
        ))
        .into());
    }
    if client.is_public()
        && !matches!(
            grant,
            GrantType::AuthorizationCode | GrantType::RefreshToken
        )
    {
        return Err(OAuthError::unauthorized_client(format!(
            "a public client may not use the {} grant: it has no secret to prove who it is",
            grant.as_str()
        ))
        .into());
    }
    if !client.grant_types.contains(&grant) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {} grant",
            grant.as_str()
        ))
        .into());
    }
    match grant {
        GrantType::ClientCredentials => {
            let resources = state.resources.requested(params.resources())?;
            let scopes = state
                .resources
                .scopes(&client, params.get("scope"), &resources)?;
            let subject = client.client_id.clone();
            let grant_of = Grant::new(subject, scopes, None)
                .for_resources(resources.clone(), resources)
                .bound_to(jkt);
            issue(state, client, grant, grant_of).await
        }
        GrantType::Password => password(state, client, &params, parts, jkt).await,
        GrantType::AuthorizationCode => authorization_code(state, client, &params, jkt).await,
        GrantType::RefreshToken => refresh(state, client, &params, jkt).await,
    }
}

/// The scopes of a request: what it asks for, which must be allowed for the client, or the
/// client's defaults.
pub(crate) fn requested_scopes(
    client: &ClientRecord,
    requested: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(client.default_scopes.clone());
    };
    let scopes = parse_scope(requested)?;
    if let Some(bad) = scopes.iter().find(|s| !client.scopes.contains(s)) {
        return Err(OAuthError::invalid_scope(format!(
            "scope {bad} is not allowed for this client"
        )));
    }
    Ok(scopes)
}

async fn password(
    state: &ServerState,
    client: ClientRecord,
    params: &Params,
    parts: &http::request::Parts,
    jkt: Option<&str>,
) -> Result<Response, Refused> {
    let verifier = state
        .password
        .as_ref()
        .ok_or_else(|| OAuthError::unsupported_grant_type("password grant is off"))?;
    let username = params.require("username")?;
    let password = params.require("password")?;
    if username.len() > 256 || password.len() > 1024 {
        return Err(OAuthError::invalid_grant("the resource owner's credentials are wrong").into());
    }
    let resources = state.resources.requested(params.resources())?;
    let scopes = state
        .resources
        .scopes(&client, params.get("scope"), &resources)?;
    // Guessing passwords through the token endpoint is throttled like guessing secrets. The
    // key holds a digest of the username, not the name: a store that shares failure counts
    // keeps the keys, and users type passwords into username fields.
    let key = format!("user:{}", URL_SAFE_NO_PAD.encode(Sha256::digest(username)));
    let now = Instant::now();
    if let Some(wait) = state.limiter.blocked(&key, now) {
        return Err(OAuthError::password_rate_limited(wait).into());
    }
    let Some(subject) = verifier.verify(username, password).await else {
        let keys: Vec<String> = std::iter::once(key)
            .chain(client_auth::peer(&parts.extensions).map(|ip| format!("peer:{ip}")))
            .collect();
        state
            .limiter
            .record_failures(&*state.store, &keys, now)
            .await;
        return Err(OAuthError::invalid_grant("the resource owner's credentials are wrong").into());
    };
    let family = Some(random_token(16)?);
    issue(
        state,
        client,
        GrantType::Password,
        Grant::new(subject, scopes, family)
            .for_resources(resources.clone(), resources)
            .bound_to(jkt),
    )
    .await
}

async fn authorization_code(
    state: &ServerState,
    client: ClientRecord,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Response, Refused> {
    let code = params.require("code")?;
    let verifier = params.require("code_verifier")?;
    if !valid_verifier(verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)",
        )
        .into());
    }
    let Some((record, first)) = state
        .store
        .take_code(&TokenHash::of(code), &client.client_id)
        .await?
    else {
        return Err(OAuthError::invalid_grant("authorization code is not valid").into());
    };
    if record.client_id != client.client_id {
        return Err(
            OAuthError::invalid_grant("authorization code was issued to another client").into(),
        );
    }
    if !first {
        // RFC 6749 §4.1.2: a code used twice revokes what was issued from it.
        let revoked = state.store.revoke_family(&record.family_id).await?;
        state.denylist.extend(&revoked);
        audit::code_reuse(&state.audit, &client.client_id, revoked.len());
        audit::revoked(
            &state.audit,
            &client.client_id,
            "authorization code reuse",
            &revoked,
        );
        return Err(OAuthError::invalid_grant(
            "authorization code was already used; the tokens issued from it are revoked",
        )
        .into());
    }
    if record.expires_at <= time::now() {
        return Err(OAuthError::invalid_grant("authorization code has expired").into());
    }
    // RFC 9449 §10: a code requested with `dpop_jkt` is redeemed only with a proof by that key.
    if let Some(bound) = &record.dpop_jkt
        && jkt != Some(bound.as_str())
    {
        return Err(OAuthError::invalid_grant(
            "the authorization code is bound to a DPoP key (dpop_jkt): redeem it with a proof \
             by that key",
        )
        .into());
    }
    match params.get("redirect_uri") {
        Some(uri) if uri != record.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request's",
            )
            .into());
        }
        // Optional only when the authorization request could omit it too: one registered URI,
        // used as registered (not with another loopback port).
        None if client.redirect_uris != [record.redirect_uri.as_str()] => {
            return Err(OAuthError::invalid_request("missing parameter `redirect_uri`").into());
        }
        _ => {}
    }
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !bool::from(digest.as_bytes().ct_eq(record.code_challenge.as_bytes())) {
        return Err(
            OAuthError::invalid_grant("code_verifier does not match the code_challenge").into(),
        );
    }
    // RFC 8707 §2.2: the token request may name fewer of the authorized resources.
    let resources = state
        .resources
        .within(params.resources(), &record.resources)?;
    // The client may have lost scopes since consent; fewer resources may allow fewer.
    let scopes = record
        .scopes
        .into_iter()
        .filter(|s| client.scopes.contains(s))
        .collect();
    let scopes = state.resources.narrow(scopes, &resources);
    issue(
        state,
        client,
        GrantType::AuthorizationCode,
        Grant::new(record.subject, scopes, Some(record.family_id))
            .for_resources(resources, record.resources)
            .bound_to(jkt),
    )
    .await
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]`.
pub(crate) fn valid_verifier(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

async fn refresh(
    state: &ServerState,
    client: ClientRecord,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Response, Refused> {
    let presented = params.require("refresh_token")?;
    let Some(old) = state.store.find_refresh(&TokenHash::of(presented)).await? else {
        return Err(OAuthError::invalid_grant("refresh token is not valid").into());
    };
    if old.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("refresh token was issued to another client").into());
    }
    // RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
    if let Some(bound) = &old.dpop_jkt
        && jkt != Some(bound.as_str())
    {
        let description = match jkt {
            None => "the refresh token is bound to a DPoP key: send a DPoP proof by that key",
            Some(_) => "the refresh token is bound to another DPoP key",
        };
        return Err(OAuthError::invalid_grant(description).into());
    }
    match old.state {
        TokenState::Revoked => {
            return Err(OAuthError::invalid_grant("refresh token is revoked").into());
        }
        TokenState::Rotated => {
            if let Some(answer) = grace_retry(state, &old, presented).await? {
                return Ok(answer);
            }
            return Err(reuse(state, &old).await.into());
        }
        TokenState::Active => {}
    }
    if old.is_expired(time::now()) {
        return Err(OAuthError::invalid_grant("refresh token has expired").into());
    }
    let scopes = match params.get("scope") {
        None => old.scopes.clone(),
        Some(requested) => {
            let scopes = parse_scope(requested)?;
            if let Some(bad) = scopes.iter().find(|s| !old.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {bad} was not granted originally"
                ))
                .into());
            }
            scopes
        }
    };
    // May narrow the grant's resources, never widen them (RFC 8707 §2.2).
    let resources = state.resources.within(params.resources(), &old.resources)?;
    let scopes = scopes
        .into_iter()
        .filter(|s| client.scopes.contains(s))
        .collect();
    let scopes = state.resources.narrow(scopes, &resources);
    let mut grant = Grant::new(old.subject.clone(), scopes, old.family_id.clone())
        .for_resources(resources, old.resources.clone())
        .bound_to(jkt);
    grant.rotate = Some(old);
    grant.presented = Some(presented.to_owned());
    issue(state, client, GrantType::RefreshToken, grant).await
}

/// The HKDF label of the key that seals a rotation's answer for the grace window.
const GRACE_LABEL: &[u8] = b"tower-oauth2 refresh grace v1";

/// Seals a refresh's answer for the grace window, under a key derived from the rotated-out
/// token's value and bound to its id.
fn seal_answer(presented: &str, old_id: &str, body: &Value) -> Result<Vec<u8>, OAuthError> {
    let failed = |_| OAuthError::server_error("sealing the refresh answer failed");
    let sealer = super::seal::Sealer::derived(GRACE_LABEL, presented.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let plain = serde_json::to_vec(body).map_err(|e| failed(e.to_string()))?;
    sealer.seal(old_id, &plain).map_err(failed)
}

/// A rotated-out refresh token came back within the grace window, from its own client: the
/// same answer as its rotation gave (a network retry), if that answer's refresh token is
/// still unused. `None`: not a retry; reuse detection applies.
async fn grace_retry(
    state: &ServerState,
    old: &TokenRecord,
    presented: &str,
) -> Result<Option<Response>, OAuthError> {
    let Some(window) = state.refresh_grace else {
        return Ok(None);
    };
    let Some(successor) = state.store.successor(&old.id).await? else {
        return Ok(None);
    };
    let now = time::now();
    if now > successor.rotated_at.saturating_add(window.as_secs()) {
        return Ok(None);
    }
    let opened = super::seal::Sealer::derived(GRACE_LABEL, presented.as_bytes())
        .ok()
        .and_then(|sealer| sealer.open(&old.id, &successor.sealed).ok())
        .and_then(|plain| serde_json::from_slice::<Value>(&plain).ok());
    let Some(mut body) = opened else {
        return Ok(None);
    };
    // Its successor must be unused: once the client has used the new refresh token, the old
    // one coming back is a replay, not a retry.
    let Some(next) = body["refresh_token"].as_str() else {
        return Ok(None);
    };
    match state.store.find_refresh(&TokenHash::of(next)).await? {
        Some(token) if token.state == TokenState::Active && !token.is_expired(now) => {}
        _ => return Ok(None),
    }
    if let Some(expires_in) = body["expires_in"].as_u64() {
        body["expires_in"] = expires_in
            .saturating_sub(now.saturating_sub(successor.rotated_at))
            .into();
    }
    audit::refresh_retry(&state.audit, &old.client_id, old.family_id.as_deref());
    Ok(Some(json_response(StatusCode::OK, &body)))
}

/// A rotated-out refresh token came back: revoke its family (RFC 9700 §4.14.2).
async fn reuse(state: &ServerState, old: &TokenRecord) -> OAuthError {
    let Some(family) = &old.family_id else {
        return OAuthError::invalid_grant("refresh token was already used");
    };
    match state.store.revoke_family(family).await {
        Ok(revoked) => {
            state.denylist.extend(&revoked);
            audit::refresh_reuse(&state.audit, family, &old.client_id, revoked.len());
            audit::revoked(
                &state.audit,
                &old.client_id,
                "refresh token reuse",
                &revoked,
            );
            OAuthError::invalid_grant(
                "refresh token was already used; every token of this grant is revoked",
            )
        }
        Err(error) => error.into(),
    }
}

/// What a successful grant issues tokens for.
struct Grant {
    subject: String,
    scopes: Vec<String>,
    /// The refresh-token family: `Some` for grants that get a refresh token.
    family: Option<String>,
    /// For the refresh grant, the refresh token being rotated.
    rotate: Option<TokenRecord>,
    /// The access token's resources (RFC 8707), its audiences; empty: the default audience.
    resources: Vec<String>,
    /// The grant's resources, which a new refresh token keeps.
    grant_resources: Vec<String>,
    /// For the refresh grant, the rotated-out token's value: the grace window seals the answer
    /// under a key derived from it.
    presented: Option<String>,
    /// The thumbprint of the request's DPoP key: the access token is bound to it.
    jkt: Option<String>,
}

impl Grant {
    fn new(subject: String, scopes: Vec<String>, family: Option<String>) -> Self {
        Self {
            subject,
            scopes,
            family,
            rotate: None,
            resources: Vec::new(),
            grant_resources: Vec::new(),
            presented: None,
            jkt: None,
        }
    }

    /// Bound to the DPoP key with this thumbprint, if any (RFC 9449 §5).
    fn bound_to(mut self, jkt: Option<&str>) -> Self {
        self.jkt = jkt.map(str::to_owned);
        self
    }

    /// For `resources` (the access token's) within `granted` (the refresh token's).
    fn for_resources(mut self, resources: Vec<String>, granted: Vec<String>) -> Self {
        self.resources = resources;
        self.grant_resources = granted;
        self
    }
}

/// Seconds of a lifetime, rounded up; `None` for unlimited.
fn expiry(now: u64, lifetime: TokenLifetime) -> Option<u64> {
    lifetime
        .duration()
        .map(|d| now.saturating_add(d.as_secs() + u64::from(d.subsec_nanos() > 0)))
}

/// Signs and stores the tokens of a successful grant and answers with them (RFC 6749 §5.1).
async fn issue(
    state: &ServerState,
    client: ClientRecord,
    grant_type: GrantType,
    grant: Grant,
) -> Result<Response, Refused> {
    let now = time::now();
    let (access_lifetime, refresh_lifetime) = state.lifetimes(&client);
    let access_lifetime = state.resources.lifetime(&grant.resources, access_lifetime);
    if access_lifetime == TokenLifetime::Unlimited && !state.allow_unlimited {
        return Err(OAuthError::server_error(
            "the client's access-token lifetime is unlimited but the server does not allow it",
        )
        .into());
    }
    let exp = expiry(now, access_lifetime);
    let jti = random_token(16)?;
    let scope = grant.scopes.join(" ");
    let mut claims = Map::new();
    claims.insert("iss".into(), state.issuer.clone().into());
    claims.insert("sub".into(), grant.subject.clone().into());
    let aud: Value = match grant.resources.as_slice() {
        [] => state.audiences[0].clone().into(),
        [one] => one.clone().into(),
        many => many.to_vec().into(),
    };
    claims.insert("aud".into(), aud);
    if let Some(exp) = exp {
        claims.insert("exp".into(), exp.into());
    }
    claims.insert("iat".into(), now.into());
    claims.insert("jti".into(), jti.clone().into());
    claims.insert("client_id".into(), client.client_id.clone().into());
    if !scope.is_empty() {
        claims.insert("scope".into(), scope.clone().into());
    }
    if let Some(hook) = &state.claims {
        let context = super::ClaimsContext {
            grant_type,
            client_id: client.client_id.clone(),
            subject: grant.subject.clone(),
            scopes: grant.scopes.clone(),
            resources: grant.resources.clone(),
        };
        match hook.claims(&context).await {
            Ok(extra) => super::claims::merge(&mut claims, extra, &client.client_id),
            Err(error) => {
                tracing::error!(
                    target: "tower_oauth2::server",
                    %error,
                    client_id = %client.client_id,
                    "the claims hook failed: no token issued"
                );
                return Err(OAuthError::hook_failed("the application's claims hook failed").into());
            }
        }
    }
    if let Some(jkt) = &grant.jkt {
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    let access_token = state
        .sign(&Value::Object(claims))
        .map_err(OAuthError::server_error)?;
    let access = TokenRecord {
        id: jti,
        kind: TokenKind::Access,
        hash: None,
        client_id: client.client_id.clone(),
        subject: grant.subject.clone(),
        family_id: grant.family.clone(),
        scopes: grant.scopes.clone(),
        issued_at: now,
        expires_at: exp,
        state: TokenState::Active,
        resources: grant.resources.clone(),
        dpop_jkt: grant.jkt.clone(),
    };
    let wants_refresh = grant_type != GrantType::ClientCredentials
        && client.grant_types.contains(&GrantType::RefreshToken);
    let refresh = match (&grant.family, wants_refresh) {
        (Some(family), true) => {
            let value = random_token(32)?;
            let record = TokenRecord {
                id: random_token(16)?,
                kind: TokenKind::Refresh,
                hash: Some(TokenHash::of(&value)),
                client_id: client.client_id.clone(),
                subject: grant.subject.clone(),
                family_id: Some(family.clone()),
                // RFC 6749 §6: a rotated refresh token keeps the scope of the one it replaces
                // (less any the client has lost), however narrow the new access token.
                scopes: match &grant.rotate {
                    Some(old) => old
                        .scopes
                        .iter()
                        .filter(|s| client.scopes.contains(s))
                        .cloned()
                        .collect(),
                    None => grant.scopes.clone(),
                },
                issued_at: now,
                expires_at: expiry(now, refresh_lifetime),
                state: TokenState::Active,
                resources: grant.grant_resources.clone(),
                // A public client's refresh token is bound to its DPoP key, as the one it
                // replaces was (RFC 9449 §5); a confidential client's is bound to its
                // authentication already.
                dpop_jkt: match &grant.rotate {
                    Some(old) if old.dpop_jkt.is_some() => old.dpop_jkt.clone(),
                    _ if client.is_public() => grant.jkt.clone(),
                    _ => None,
                },
            };
            Some((value, record))
        }
        _ => None,
    };
    let token_type = if grant.jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": token_type,
    });
    if let Some(exp) = exp {
        body["expires_in"] = (exp - now).into();
    }
    if let Some((value, _)) = &refresh {
        body["refresh_token"] = value.clone().into();
    }
    if !scope.is_empty() {
        body["scope"] = scope.into();
    }
    let successor = match (&grant.rotate, &grant.presented, state.refresh_grace) {
        (Some(old), Some(presented), Some(_)) => Some(Successor {
            sealed: seal_answer(presented, &old.id, &body)?,
            rotated_at: now,
        }),
        _ => None,
    };
    let client_id = client.client_id.clone();
    let mut tokens = vec![access];
    tokens.extend(refresh.as_ref().map(|(_, r)| r.clone()));
    // One atomic step, committed with the tokens of other requests waiting at the same time
    // (group commit); it stores nothing if the client changed, was disabled or deleted since
    // it was read, so no token outlives an operator's change.
    let issue = TokenIssue {
        client,
        rotate: grant.rotate.as_ref().map(|old| old.id.clone()),
        tokens: tokens.clone(),
        successor,
    };
    match state.store.issue_tokens(issue).await? {
        IssueOutcome::Stored => {}
        IssueOutcome::Revoked => {
            // A replay of this grant's code revoked it while these were being issued: they are
            // stored revoked, and refused from the start.
            let revoked: Vec<TokenRecord> = tokens
                .iter()
                .map(|t| TokenRecord {
                    state: TokenState::Revoked,
                    ..t.clone()
                })
                .collect();
            state.denylist.extend(&revoked);
            audit::revoked(
                &state.audit,
                &client_id,
                "authorization code reuse",
                &revoked,
            );
        }
        IssueOutcome::NotRotated => {
            // Another request rotated (or revoked) it first: a replay.
            let old_id = grant.rotate.map(|old| old.id).unwrap_or_default();
            return match state.store.token(&old_id).await? {
                Some(now) if now.state == TokenState::Rotated => {
                    // A concurrent copy of this request won: within the grace window, its answer.
                    let presented = grant.presented.unwrap_or_default();
                    match grace_retry(state, &now, &presented).await? {
                        Some(answer) => Ok(answer),
                        None => Err(reuse(state, &now).await.into()),
                    }
                }
                _ => Err(OAuthError::invalid_grant("refresh token is no longer valid").into()),
            };
        }
        // `IssueOutcome` is non-exhaustive; anything else stored nothing usable.
        _ => return Err(Refused::ClientChanged(client_id)),
    }
    let mut tokens = tokens.into_iter();
    let access = tokens.next();
    let refresh_record = tokens.next();
    if let Some(access) = &access {
        audit::token_issued(
            &state.audit,
            grant_type.as_str(),
            access,
            refresh_record.as_ref(),
        );
    }
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn verifier_grammar() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"A-._~9".repeat(22)[..128]));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn expiry_rounds_up_and_unlimited_has_none() {
        let l = TokenLifetime::Limited(Duration::from_millis(1500));
        assert_eq!(expiry(100, l), Some(102));
        assert_eq!(expiry(100, TokenLifetime::Unlimited), None);
    }
}
