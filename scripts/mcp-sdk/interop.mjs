// Interop check: the official MCP TypeScript SDK (@modelcontextprotocol/sdk) as the client of
// examples/mcp_server (rmcp behind tower-oauth2, with tower-oauth2's authorization server).
//
// Run through scripts/interop_mcp.sh (it lives here, beside its node_modules), which installs the SDK, builds and starts the example and
// sets MCP_BASE and MCP_SERVICE_CLIENT_SECRET.
//
// 1. The SDK's client with an OAuth provider connects: it gets the 401, follows
//    `resource_metadata` to the protected-resource metadata (RFC 9728), reads the authorization
//    server's metadata (RFC 8414), registers dynamically (RFC 7591) as a public client, and hands
//    the authorization URL (PKCE S256, `resource`) to the app, which follows it as a browser
//    would; the SDK redeems the code (with `resource`, no secret), connects, lists the tools,
//    calls `whoami`; then it refreshes (rotation) and the rotated-out refresh token is refused.
// 2. The same with a Client ID Metadata Document instead of registration: the provider's
//    `clientMetadataUrl` is an https URL this script serves on loopback (test certificate, from
//    MCP_TLS_CERT and MCP_TLS_KEY); the authorization server fetches it.
// 3. The SDK's ClientCredentialsProvider gets a token for the confidential client and calls the
//    tool.
// Each request the SDK sends is recorded, so the checks see the order and the parameters.
// Prints one `ok  - ...` / `FAIL - ...` line per check and `N passed, M failed`; exits 1 on a
// failure.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  UnauthorizedError,
  discoverAuthorizationServerMetadata,
  refreshAuthorization,
} from "@modelcontextprotocol/sdk/client/auth.js";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { readFileSync } from "node:fs";
import { createServer } from "node:https";

const base = process.env.MCP_BASE;
const serviceSecret = process.env.MCP_SERVICE_CLIENT_SECRET;
const mcpUrl = new URL(`${base}/mcp`);
let passed = 0;
let failed = 0;

function check(name, ok, evidence) {
  if (ok) {
    passed += 1;
    console.log(`ok  - ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL - ${name}`);
    if (evidence !== undefined) {
      for (const line of String(typeof evidence === "string" ? evidence : JSON.stringify(evidence, null, 1)).split("\n").slice(0, 40)) {
        console.log(`       ${line}`);
      }
    }
  }
  return ok;
}

/** Every request the SDK makes: method, URL, status, form or JSON body. */
const sent = [];
async function recordingFetch(url, init = {}) {
  const response = await fetch(url, init);
  let body;
  if (typeof init.body === "string") body = init.body;
  else if (init.body instanceof URLSearchParams) body = init.body.toString();
  sent.push({
    method: init.method ?? "GET",
    url: String(url),
    status: response.status,
    body,
    headers: new Headers(init.headers ?? {}),
  });
  return response;
}

/** An in-memory OAuth client provider, as a CLI would keep it. */
class MemoryProvider {
  constructor(redirectUrl) {
    this._redirectUrl = redirectUrl;
    this._state = crypto.randomUUID();
  }
  get redirectUrl() {
    return this._redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: "tower-oauth2 interop (MCP TypeScript SDK)",
      redirect_uris: [this._redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    return this._state;
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(url) {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
}

async function callWhoami(provider, label) {
  const client = new Client({ name: "tower-oauth2-interop", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
  await client.connect(transport);
  const tools = await client.listTools();
  check(`${label}: tools/list names whoami`, tools.tools.some((t) => t.name === "whoami"), tools);
  const result = await client.callTool({ name: "whoami", arguments: {} });
  const text = result.content?.[0]?.text ?? "";
  await client.close();
  return text;
}

async function authorizationCodeFlow() {
  // A loopback redirect on a port nothing listens on: the app reads the code off the redirect.
  const port = 40000 + Math.floor(Math.random() * 20000);
  const redirect = `http://127.0.0.1:${port}/callback`;
  const provider = new MemoryProvider(redirect);
  const client = new Client({ name: "tower-oauth2-interop", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
  let unauthorized = false;
  try {
    await client.connect(transport);
  } catch (error) {
    unauthorized = error instanceof UnauthorizedError;
    if (!unauthorized) check("connect without a token -> UnauthorizedError", false, String(error?.stack ?? error));
  }
  check("connect without a token ends in UnauthorizedError, after the SDK started the authorization", unauthorized && provider.authorizationUrl !== undefined, sent);

  const first = sent.find((r) => r.url === mcpUrl.href);
  check("the SDK's first request to /mcp got 401", first?.status === 401, sent);
  const prm = sent.find((r) => r.url === `${base}/.well-known/oauth-protected-resource/mcp`);
  check("the SDK followed resource_metadata to the protected-resource metadata (200)", prm?.status === 200, sent);
  check("the SDK read the authorization server's metadata", sent.some((r) => r.url === `${base}/.well-known/oauth-authorization-server` && r.status === 200), sent.map((r) => `${r.method} ${r.url} ${r.status}`));
  const registration = sent.find((r) => r.url === `${base}/oauth2/register`);
  const registered = registration?.body ? JSON.parse(registration.body) : {};
  check("the SDK registered dynamically (POST /oauth2/register -> 201) as a public client",
    registration?.status === 201 && registered.token_endpoint_auth_method === "none", registration);
  check("the registration answer was kept: a client_id and no secret",
    typeof provider.info?.client_id === "string" && provider.info?.client_secret === undefined, provider.info);
  if (!provider.authorizationUrl) return;

  const url = new URL(provider.authorizationUrl);
  const q = url.searchParams;
  check("the authorization URL is the metadata's authorization_endpoint", `${url.origin}${url.pathname}` === `${base}/oauth2/authorize`, url.href);
  check("the authorization request has PKCE S256, the state, the redirect URI and resource=<the MCP server>",
    q.get("code_challenge_method") === "S256" && q.get("code_challenge")?.length === 43
      && q.get("state") === provider.state() && q.get("redirect_uri") === redirect
      && q.get("resource") === mcpUrl.href && q.get("client_id") === provider.info?.client_id,
    url.href);
  check("the authorization request asks for the scope from the protected-resource metadata", q.get("scope")?.split(" ").includes("mcp:tools"), url.href);

  // The browser: the consent handler approves; the server redirects to the loopback port.
  const answer = await fetch(url, { redirect: "manual" });
  const location = answer.headers.get("location") ?? "";
  const back = location ? new URL(location) : undefined;
  check("GET /authorize -> 302 to the redirect URI with a code, the state and iss",
    answer.status === 302 && back?.origin + back?.pathname === redirect
      && back?.searchParams.get("state") === provider.state()
      && back?.searchParams.get("iss") === base && !!back?.searchParams.get("code"),
    `${answer.status} ${location}`);
  const code = back?.searchParams.get("code");
  if (!code) return;

  try {
    await transport.finishAuth(code);
  } catch (error) {
    check("finishAuth(code)", false, String(error?.stack ?? error));
    return;
  }
  const tokenRequest = sent.findLast((r) => r.url === `${base}/oauth2/token`);
  const form = new URLSearchParams(tokenRequest?.body ?? "");
  check("the code was redeemed: grant_type authorization_code, code_verifier, resource, client_id, no secret",
    tokenRequest?.status === 200 && form.get("grant_type") === "authorization_code"
      && !!form.get("code_verifier") && form.get("resource") === mcpUrl.href
      && form.get("client_id") === provider.info?.client_id && !form.has("client_secret")
      && !tokenRequest.headers.has("authorization"),
    tokenRequest);
  const tokens = provider.tokens();
  check("the SDK saved an access token and a refresh token", !!tokens?.access_token && !!tokens?.refresh_token, tokens);
  const payload = JSON.parse(Buffer.from(tokens.access_token.split(".")[1], "base64url").toString());
  check("the access token's aud is the MCP server (RFC 8707) and its scope mcp:tools",
    payload.aud === mcpUrl.href && payload.scope === "mcp:tools", payload);

  const text = await callWhoami(provider, "authorization code");
  check("tools/call whoami -> the user mcp-user, the registered client, scope mcp:tools",
    text.includes("mcp-user") && text.includes(provider.info.client_id) && text.includes("mcp:tools"), text);

  // Refresh, as the SDK does when the access token expires.
  const metadata = await discoverAuthorizationServerMetadata(base, { fetchFn: recordingFetch });
  const oldRefresh = tokens.refresh_token;
  let refreshed;
  try {
    refreshed = await refreshAuthorization(base, {
      metadata,
      clientInformation: provider.info,
      refreshToken: oldRefresh,
      resource: mcpUrl,
      fetchFn: recordingFetch,
    });
  } catch (error) {
    check("refreshAuthorization", false, String(error?.stack ?? error));
    return;
  }
  check("refreshAuthorization -> a new access token and a new refresh token (rotation)",
    !!refreshed.access_token && refreshed.refresh_token && refreshed.refresh_token !== oldRefresh, refreshed);
  provider.saveTokens(refreshed);
  const again = await callWhoami(provider, "after refresh");
  check("tools/call whoami with the refreshed token", again.includes("mcp-user"), again);
  let reuse;
  try {
    await refreshAuthorization(base, { metadata, clientInformation: provider.info, refreshToken: oldRefresh, resource: mcpUrl, fetchFn: recordingFetch });
  } catch (error) {
    reuse = error;
  }
  check("the rotated-out refresh token again is refused (invalid_grant)",
    reuse !== undefined && /invalid_grant|InvalidGrant/i.test(`${reuse?.errorCode ?? ""} ${reuse?.constructor?.name ?? ""} ${reuse?.message ?? ""}`),
    String(reuse?.stack ?? reuse));
  const probe = await fetch(mcpUrl, {
    method: "POST",
    headers: { authorization: `Bearer ${refreshed.access_token}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
  });
  check("reuse revoked the grant: the newest access token now gets 401", probe.status === 401, probe.status);
}

/** Serves the client metadata document over https on loopback; its URL. */
async function serveClientMetadata(redirect) {
  let url;
  let fetched = 0;
  const server = createServer(
    { cert: readFileSync(process.env.MCP_TLS_CERT), key: readFileSync(process.env.MCP_TLS_KEY) },
    (request, response) => {
      if (request.url !== "/oauth/client-metadata.json") {
        response.writeHead(404).end();
        return;
      }
      fetched += 1;
      response.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=300" });
      response.end(JSON.stringify({
        client_id: url,
        client_name: "tower-oauth2 interop (MCP TypeScript SDK, metadata document)",
        redirect_uris: [redirect],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
      }));
    },
  );
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `https://127.0.0.1:${server.address().port}/oauth/client-metadata.json`;
  return { url, server, fetched: () => fetched };
}

async function clientMetadataDocumentFlow() {
  const port = 40000 + Math.floor(Math.random() * 20000);
  const redirect = `http://127.0.0.1:${port}/callback`;
  const documentServer = await serveClientMetadata(redirect);
  // Node itself trusts the test CA (NODE_EXTRA_CA_CERTS): the document is what the server gets.
  const own = await fetch(documentServer.url);
  check("metadata document: served over https with the test certificate", own.status === 200, own.status);
  const provider = new MemoryProvider(redirect);
  provider.clientMetadataUrl = documentServer.url;
  const before = sent.length;
  const client = new Client({ name: "tower-oauth2-interop", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
  try {
    await client.connect(transport);
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) {
      check("metadata document: connect -> UnauthorizedError", false, String(error?.stack ?? error));
    }
  }
  const ours = sent.slice(before);
  check("metadata document: the SDK did not register (the metadata says client_id_metadata_document_supported)",
    !ours.some((r) => r.url === `${base}/oauth2/register`), ours.map((r) => `${r.method} ${r.url}`));
  const url = provider.authorizationUrl ? new URL(provider.authorizationUrl) : undefined;
  check("metadata document: the authorization request's client_id is the document's URL",
    url?.searchParams.get("client_id") === documentServer.url, url?.href);
  if (!url) {
    documentServer.server.close();
    return;
  }
  const answer = await fetch(url, { redirect: "manual" });
  const location = answer.headers.get("location") ?? "";
  const code = location ? new URL(location).searchParams.get("code") : null;
  check("metadata document: the server fetched the document and /authorize redirected with a code",
    answer.status === 302 && !!code && documentServer.fetched() >= 1, `${answer.status} ${location} fetched=${documentServer.fetched()}`);
  if (!code) {
    documentServer.server.close();
    return;
  }
  await transport.finishAuth(code);
  const tokenRequest = sent.findLast((r) => r.url === `${base}/oauth2/token`);
  const form = new URLSearchParams(tokenRequest?.body ?? "");
  check("metadata document: the code was redeemed with the URL as client_id, no secret",
    tokenRequest?.status === 200 && form.get("client_id") === documentServer.url && !form.has("client_secret"),
    tokenRequest);
  const text = await callWhoami(provider, "metadata document");
  check("metadata document: tools/call whoami names the document's URL as the client",
    text.includes(`(client ${documentServer.url})`), text);
  documentServer.server.close();
}

async function clientCredentialsFlow() {
  if (!serviceSecret) {
    check("MCP_SERVICE_CLIENT_SECRET is set", false);
    return;
  }
  const provider = new ClientCredentialsProvider({
    clientId: "mcp-service",
    clientSecret: serviceSecret,
    scope: "mcp:tools",
    expectedIssuer: base,
  });
  const before = sent.length;
  const text = await callWhoami(provider, "client credentials");
  const tokenRequest = sent.slice(before).find((r) => r.url === `${base}/oauth2/token`);
  const form = new URLSearchParams(tokenRequest?.body ?? "");
  check("ClientCredentialsProvider: client_credentials with Basic authentication and resource",
    tokenRequest?.status === 200 && form.get("grant_type") === "client_credentials"
      && (tokenRequest.headers.get("authorization") ?? "").startsWith("Basic ")
      && form.get("resource") === mcpUrl.href, tokenRequest);
  check("ClientCredentialsProvider: tools/call whoami as the client itself",
    text.includes("You are mcp-service (client mcp-service)"), text);
}

try {
  await authorizationCodeFlow();
  await clientMetadataDocumentFlow();
  await clientCredentialsFlow();
} catch (error) {
  check(`the script ran to the end (${error?.name}: ${error?.message})`, false, String(error?.stack ?? error));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
