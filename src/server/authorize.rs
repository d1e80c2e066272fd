//! The authorization endpoint (RFC 6749 §4.1.1, RFC 7636): validates the request, asks the
//! app's [`ConsentHandler`], and redirects back with a code or an error. The crate renders no
//! pages: login and consent screens are the app's.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use super::http::{OAuthError, Params, random_token};
use super::store::{ClientStatus, CodeRecord, GrantType, TokenHash};
use super::{HookFuture, ServerState};
use crate::time;

/// A validated authorization request, for the app to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationRequest {
    /// The client asking for access.
    pub client_id: String,
    /// Its registered name, to show the user.
    pub client_name: String,
    /// Where the user will be sent back (one of the client's registered URIs).
    pub redirect_uri: String,
    /// The scopes asked for (or the client's defaults), all allowed for the client.
    pub scopes: Vec<String>,
    /// The client's `state`, echoed back on the redirect.
    pub state: Option<String>,
    /// The resource servers the tokens are for (RFC 8707 `resource` parameters), all known to
    /// the server; empty for its default audience. Show them to the user with the scopes.
    pub resources: Vec<String>,
}

/// The app's answer to an authorization request.
#[derive(Debug)]
pub enum ConsentDecision {
    /// The user (`subject`) approved; `scopes`, if given, narrows what was asked for.
    Approve {
        /// The resource owner's identifier, the tokens' `sub`.
        subject: String,
        /// A subset of the requested scopes, or `None` for all of them.
        scopes: Option<Vec<String>>,
    },
    /// The user refused: the client gets `access_denied`.
    Deny,
    /// Not decided yet: answer with this response (a login or consent page, a redirect to
    /// one). The page sends the user back to `/authorize` with the same parameters once the
    /// app can decide.
    Respond(Response),
}

/// Decides authorization requests for the `authorization_code` grant. The app authenticates
/// the user (its session cookie is in `request`) and asks for consent however it likes.
pub trait ConsentHandler: Send + Sync + 'static {
    /// Decides `authorization`, made by the browser request whose head is `request`.
    fn decide<'a>(
        &'a self,
        authorization: &'a AuthorizationRequest,
        request: &'a http::request::Parts,
    ) -> HookFuture<'a, ConsentDecision>;
}

/// `GET` or `POST /authorize`.
pub(crate) async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match authorize(&state, &parts, body).await {
        Ok(response) | Err(Failure::Direct(response)) => response,
        Err(Failure::Redirect(redirect)) => redirect.into_response(),
    }
}

/// How a refused request is answered.
enum Failure {
    /// Before the redirect URI is trusted: an error page (JSON) for the user agent.
    Direct(Response),
    /// Back to the client (RFC 6749 §4.1.2.1).
    Redirect(Redirect),
}

impl From<OAuthError> for Failure {
    fn from(error: OAuthError) -> Self {
        Failure::Direct(error.into_response())
    }
}

struct Redirect {
    uri: String,
    params: Vec<(&'static str, String)>,
    see_other: bool,
}

impl Redirect {
    fn error(base: &Base, code: &'static str, description: &str) -> Failure {
        let mut params = vec![("error", code.to_owned())];
        params.push(("error_description", description.to_owned()));
        base.finish(params)
    }
}

impl IntoResponse for Redirect {
    fn into_response(self) -> Response {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.params {
            query.append_pair(name, value);
        }
        let separator = if self.uri.contains('?') { '&' } else { '?' };
        let location = format!("{}{separator}{}", self.uri, query.finish());
        let status = if self.see_other {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::FOUND
        };
        match HeaderValue::try_from(location) {
            Ok(location) => {
                let mut response = status.into_response();
                response.headers_mut().insert(header::LOCATION, location);
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(_) => OAuthError::invalid_request("redirect URI is not a valid header value")
                .into_response(),
        }
    }
}

/// What every redirect to the client carries: its URI, `state` and `iss` (RFC 9207).
struct Base {
    uri: String,
    state: Option<String>,
    issuer: String,
    see_other: bool,
}

impl Base {
    fn finish(&self, mut params: Vec<(&'static str, String)>) -> Failure {
        Failure::Redirect(self.redirect(std::mem::take(&mut params)))
    }

    fn redirect(&self, mut params: Vec<(&'static str, String)>) -> Redirect {
        if let Some(state) = &self.state {
            params.push(("state", state.clone()));
        }
        params.push(("iss", self.issuer.clone()));
        Redirect {
            uri: self.uri.clone(),
            params,
            see_other: self.see_other,
        }
    }
}

/// Whether the `requested` redirect URI matches the `registered` one: exactly, or, for a
/// loopback IP literal over `http` (`http://127.0.0.1` or `http://[::1]`), with any port, as
/// RFC 8252 §7.3 requires for native apps that listen on an ephemeral port. Scheme, host, path
/// and query must still match exactly; `localhost` is matched exactly (RFC 8252 §8.3).
pub(crate) fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    registered == requested
        || matches!(
            (loopback_without_port(registered), loopback_without_port(requested)),
            (Some(a), Some(b)) if a == b
        )
}

/// A loopback IP redirect URI split into its host and what follows the port (path and query).
fn loopback_without_port(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]"]
        .into_iter()
        .find(|h| rest.starts_with(h))?;
    let after_host = &rest[host.len()..];
    let after_port = match after_host.strip_prefix(':') {
        Some(port) => {
            let end = port
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(port.len());
            port[..end].parse::<u16>().ok()?;
            &port[end..]
        }
        None => after_host,
    };
    (after_port.is_empty() || after_port.starts_with(['/', '?'])).then_some((host, after_port))
}

async fn authorize(
    state: &ServerState,
    parts: &http::request::Parts,
    body: axum::body::Body,
) -> Result<Response, Failure> {
    let params = if parts.method == Method::POST {
        let body = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| OAuthError::invalid_request("request body too large or unreadable"))?;
        Params::from_form(&parts.headers, &body)?
    } else {
        Params::parse(parts.uri.query().unwrap_or_default().as_bytes())?
    };
    // Until client and redirect URI check out, errors go to the user agent, never to a URI.
    let client_id = params.require("client_id")?;
    if !state.plausible_client_id(client_id) {
        return Err(OAuthError::invalid_request("unknown or inactive client_id").into());
    }
    let client = state
        .client_for_authorization(client_id, parts)
        .await?
        .filter(|c| c.status == ClientStatus::Approved)
        .ok_or_else(|| OAuthError::invalid_request("unknown or inactive client_id"))?;
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri)
            if client
                .redirect_uris
                .iter()
                .any(|r| redirect_uri_matches(r, uri)) =>
        {
            uri.to_owned()
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "redirect_uri is not registered for this client",
            )
            .into());
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(OAuthError::invalid_request(
                    "redirect_uri is required: the client has several or none registered",
                )
                .into());
            }
        },
    };
    let base = Base {
        uri: redirect_uri.clone(),
        state: params.get("state").map(str::to_owned),
        issuer: state.issuer.clone(),
        see_other: parts.method == Method::POST,
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(Redirect::error(
                &base,
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        None => {
            return Err(Redirect::error(
                &base,
                "invalid_request",
                "missing parameter `response_type`",
            ));
        }
    }
    let Some(consent) = &state.consent else {
        return Err(Redirect::error(
            &base,
            "unsupported_response_type",
            "the authorization code grant is not enabled on this server",
        ));
    };
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(Redirect::error(
            &base,
            "unauthorized_client",
            "this client may not use the authorization_code grant",
        ));
    }
    let challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (None, _) => {
            return Err(Redirect::error(
                &base,
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        (Some(_), method) if method != Some("S256") => {
            return Err(Redirect::error(
                &base,
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
        (Some(challenge), _) => challenge,
    };
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Redirect::error(
            &base,
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        ));
    }
    // RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    let dpop_jkt = params.get("dpop_jkt");
    if let Some(jkt) = dpop_jkt
        && (jkt.len() != 43
            || !jkt
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(Redirect::error(
            &base,
            "invalid_request",
            "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key (43 characters)",
        ));
    }
    let resources = match state.resources.requested(params.resources()) {
        Ok(resources) => resources,
        Err(error) => return Err(Redirect::error(&base, error.code, &error.description)),
    };
    let scopes = match state
        .resources
        .scopes(&client, params.get("scope"), &resources)
    {
        Ok(scopes) => scopes,
        Err(error) => return Err(Redirect::error(&base, error.code, &error.description)),
    };
    let request = AuthorizationRequest {
        client_id: client.client_id.clone(),
        client_name: client.name.clone(),
        redirect_uri: redirect_uri.clone(),
        scopes,
        state: base.state.clone(),
        resources,
    };
    let (subject, scopes) = match consent.decide(&request, parts).await {
        ConsentDecision::Respond(response) => return Ok(response),
        ConsentDecision::Deny => {
            return Err(Redirect::error(
                &base,
                "access_denied",
                "the resource owner denied the request",
            ));
        }
        ConsentDecision::Approve { subject, scopes } => {
            let scopes = match scopes {
                None => request.scopes,
                Some(narrowed) => request
                    .scopes
                    .into_iter()
                    .filter(|s| narrowed.contains(s))
                    .collect(),
            };
            (subject, scopes)
        }
    };
    let code = random_token(32)?;
    let record = CodeRecord {
        hash: TokenHash::of(&code),
        client_id: client.client_id.clone(),
        redirect_uri,
        subject,
        scopes,
        code_challenge: challenge.to_owned(),
        family_id: random_token(16)?,
        used: false,
        expires_at: time::now() + state.code_lifetime.as_secs().max(1),
        resources: request.resources,
        dpop_jkt: dpop_jkt.map(str::to_owned),
    };
    // The redirect URI is trusted by now: a store that fails is told to the client there,
    // as `temporarily_unavailable` (RFC 6749 §4.1.2.1: a 503 cannot travel in a redirect).
    if let Err(error) = state.store.insert_code(record).await {
        let error = OAuthError::from(error);
        return Err(Redirect::error(&base, error.code, &error.description));
    }
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "code_issued",
        client_id = %client.client_id,
        "authorization code issued"
    );
    Ok(base.redirect(vec![("code", code)]).into_response())
}

#[cfg(test)]
mod tests {
    use super::redirect_uri_matches;

    #[test]
    fn loopback_ip_redirect_uris_match_with_any_port_and_nothing_else_varies() {
        let yes = [
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"),
            ("http://127.0.0.1:8080/cb", "http://127.0.0.1:9/cb"),
            ("http://[::1]/cb?x=1", "http://[::1]:65535/cb?x=1"),
            ("http://127.0.0.1", "http://127.0.0.1:4000"),
            ("https://app.example/cb", "https://app.example/cb"),
            ("com.example.app:/cb", "com.example.app:/cb"),
        ];
        for (registered, requested) in yes {
            assert!(redirect_uri_matches(registered, requested), "{requested}");
        }
        let no = [
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/other"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb/"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:65536/cb"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:/cb"),
            ("http://127.0.0.1/cb", "http://127.0.0.1.evil.example/cb"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:80@evil.example/cb"),
            ("http://127.0.0.1/cb", "http://[::1]:5000/cb"),
            ("http://127.0.0.1/cb", "https://127.0.0.1:5000/cb"),
            ("http://localhost/cb", "http://localhost:5000/cb"),
            ("https://app.example/cb", "https://app.example:444/cb"),
            ("http://127.0.0.1/cb?a=1", "http://127.0.0.1:5000/cb?a=2"),
        ];
        for (registered, requested) in no {
            assert!(!redirect_uri_matches(registered, requested), "{requested}");
        }
    }
}
