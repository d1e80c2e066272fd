// Interop check for DPoP (RFC 9449), run by scripts/interop_dpop.sh (beside its node_modules):
//
// 1. oauth4webapi (npm) as the client of the demo's authorization server and then of its
//    events API, twice: with nonces off, and with nonces on at both (DEMO_DPOP_NONCE_SECRET).
//    client_credentials, password and refresh_token with a proof; the access tokens are
//    DPoP-bound (`token_type` DPoP, `cnf.jkt` the key's thumbprint); the API accepts them
//    with a proof by that key only, refuses them as Bearer and with another key's proof; a
//    plain bearer token still works. With nonces on, the first token request and the first
//    API request each get `use_dpop_nonce`, and oauth4webapi's retry with the nonce passes.
// 2. oidc-provider (npm) with its DPoP feature, in this process, issuing DPoP-bound JWT access
//    tokens (client_credentials) that protected_service (OAUTH2_DPOP_URL) accepts only with a
//    matching proof; a second protected_service with OAUTH2_DPOP_REQUIRED=1 refuses a bearer
//    token from the same provider.
//
// Environment (set by the shell script): DEMO_BIN, SERVICE_BIN (the built examples).
// Prints one `ok  - …` / `FAIL - …` line per check and `N passed, M failed`; exits 1 on a failure.

import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as oauth from 'oauth4webapi';
import Provider from 'oidc-provider';

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
      const text = typeof evidence === 'string' ? evidence : JSON.stringify(evidence, null, 1);
      for (const line of String(text).split('\n').slice(0, 30)) console.log(`       ${line}`);
    }
  }
  return ok;
}

const children = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGTERM')));

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts `binary` with `env`, waits until `ready` answers, returns the child and its log. */
async function start(name, binary, env, ready) {
  const child = spawn(binary, [], { env: { ...process.env, NO_COLOR: '1', ...env } });
  children.push(child);
  const log = [];
  child.stdout.on('data', (d) => log.push(String(d)));
  child.stderr.on('data', (d) => log.push(String(d)));
  for (let i = 0; i < 300; i += 1) {
    if (child.exitCode !== null) break;
    try {
      const response = await fetch(ready);
      if (response.status < 500) return { child, log };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`${name} did not start:\n${log.join('')}`);
  process.exit(1);
}

function stop({ child }) {
  child.kill('SIGTERM');
}

const insecure = { [oauth.allowInsecureRequests]: true };

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
}

/** Runs `attempt` once, and once more when it fails for a DPoP nonce; reports whether it did. */
async function withNonceRetry(attempt) {
  try {
    return { result: await attempt(), retried: false };
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    return { result: await attempt(), retried: true };
  }
}

/** The error code of a 401's WWW-Authenticate challenge (oauth4webapi rejects with it). */
async function apiError(accessToken, url, DPoP, headers = new Headers()) {
  try {
    const response = await oauth.protectedResourceRequest(accessToken, 'GET', url, headers, null, {
      ...insecure,
      DPoP,
    });
    return `status ${response.status}`;
  } catch (err) {
    if (err instanceof oauth.WWWAuthenticateChallengeError) {
      // oauth4webapi lowercases the scheme; this names it as the RFCs spell it.
      const challenge = err.cause.find((c) => c.parameters.error) ?? err.cause[0];
      const scheme = { bearer: 'Bearer', dpop: 'DPoP' }[challenge.scheme] ?? challenge.scheme;
      return `${scheme} ${challenge.parameters.error}`;
    }
    throw err;
  }
}

async function demoRun(demoBin, nonces) {
  const label = nonces ? 'demo, nonces on' : 'demo, nonces off';
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'tower-oauth2-dpop-'));
  const secret = randomBytes(32).toString('base64url');
  const password = randomBytes(12).toString('base64url');
  const env = {
    BIND: `127.0.0.1:${port}`,
    DEMO_DB: join(dir, 'demo.db'),
    DEMO_CLIENT_SECRET: secret,
    DEMO_USER_PASSWORD: password,
  };
  if (nonces) env.DEMO_DPOP_NONCE_SECRET = randomBytes(32).toString('base64url');
  const demo = await start('demo', demoBin, env, `${base}/.well-known/oauth-authorization-server`);
  try {
    const issuer = new URL(base);
    const as = await oauth.processDiscoveryResponse(
      issuer,
      await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
    );
    check(`${label}: metadata advertises dpop_signing_alg_values_supported`,
      Array.isArray(as.dpop_signing_alg_values_supported)
        && as.dpop_signing_alg_values_supported.includes('ES256'), as);
    const client = { client_id: 'demo-client' };
    const auth = oauth.ClientSecretBasic(secret);
    const keyPair = await oauth.generateKeyPair('ES256');
    const DPoP = oauth.DPoP(client, keyPair);
    const jkt = await DPoP.calculateThumbprint();

    // client_credentials with a proof.
    const cc = await withNonceRetry(async () => oauth.processClientCredentialsResponse(
      as, client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'events:read' },
        { ...insecure, DPoP }),
    ));
    check(`${label}: client_credentials with a proof gets token_type DPoP`,
      cc.result.token_type === 'dpop', cc.result);
    check(`${label}: the access token's cnf.jkt is the key's thumbprint`,
      claimsOf(cc.result.access_token).cnf?.jkt === jkt, claimsOf(cc.result.access_token));
    check(`${label}: the token endpoint ${nonces ? 'asked for' : 'did not ask for'} a nonce`,
      cc.retried === nonces);

    // The API, with a proof by the key, from a handle that has no nonce yet (the token
    // endpoint's one would do: same origin, same secret).
    const me = new URL(`${base}/me`);
    const apiDPoP = oauth.DPoP(client, keyPair);
    const api = await withNonceRetry(async () => oauth.protectedResourceRequest(
      cc.result.access_token, 'GET', me, new Headers(), null, { ...insecure, DPoP: apiDPoP },
    ));
    check(`${label}: the API accepts the bound token with a proof (200)`,
      api.result.status === 200, `status ${api.result.status}`);
    check(`${label}: the API ${nonces ? 'asked for' : 'did not ask for'} a nonce`,
      api.retried === nonces);
    const body = await api.result.json();
    check(`${label}: the API saw the client's token`, body.client_id === 'demo-client', body);
    const again = await oauth.protectedResourceRequest(
      cc.result.access_token, 'GET', me, new Headers(), null, { ...insecure, DPoP: apiDPoP },
    );
    check(`${label}: a second request with a fresh proof passes`, again.status === 200,
      `status ${again.status}`);

    // Another key's proof, and the token as Bearer.
    const otherKey = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
    let other = await apiError(cc.result.access_token, me, otherKey);
    if (nonces && other === 'DPoP use_dpop_nonce') {
      other = await apiError(cc.result.access_token, me, otherKey);
    }
    check(`${label}: a proof by another key is refused (DPoP invalid_token)`,
      other === 'DPoP invalid_token', other);
    const asBearer = await apiError(cc.result.access_token, me, undefined);
    check(`${label}: the bound token as Bearer is refused (Bearer invalid_token)`,
      asBearer === 'Bearer invalid_token', asBearer);

    // password and refresh_token with proofs.
    const pw = await withNonceRetry(async () => oauth.processGenericTokenEndpointResponse(
      as, client,
      await oauth.genericTokenEndpointRequest(as, client, auth, 'password',
        { username: 'demo', password, scope: 'events:read' }, { ...insecure, DPoP }),
    ));
    check(`${label}: password grant with a proof is DPoP-bound`,
      pw.result.token_type === 'dpop'
        && claimsOf(pw.result.access_token).cnf?.jkt === jkt, pw.result);
    const refreshed = await withNonceRetry(async () => oauth.processRefreshTokenResponse(
      as, client,
      await oauth.refreshTokenGrantRequest(as, client, auth, pw.result.refresh_token,
        { ...insecure, DPoP }),
    ));
    check(`${label}: refresh_token grant with a proof is DPoP-bound`,
      refreshed.result.token_type === 'dpop'
        && claimsOf(refreshed.result.access_token).cnf?.jkt === jkt, refreshed.result);

    // Without a proof: a bearer token, accepted as before.
    const bearer = await oauth.processClientCredentialsResponse(
      as, client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'events:read' },
        insecure),
    );
    const plain = await oauth.protectedResourceRequest(
      bearer.access_token, 'GET', me, new Headers(), null, insecure,
    );
    check(`${label}: without a proof, a Bearer token that the API accepts`,
      bearer.token_type === 'bearer' && plain.status === 200,
      { token_type: bearer.token_type, status: plain.status });
  } catch (err) {
    check(`${label}: no unexpected error`, false, `${err?.stack ?? err}\n${JSON.stringify(err?.cause ?? '')}`);
  } finally {
    stop(demo);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function oidcProviderRun(serviceBin) {
  const label = 'oidc-provider';
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const clientSecret = randomBytes(32).toString('base64url');
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'dpop-client',
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // The provider has one ES256 key (its default would be RS256).
      id_token_signed_response_alg: 'ES256',
      scope: 'events:read',
    }],
    scopes: ['events:read'],
    ttl: { AccessToken: 300, ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => 'urn:events-api',
        getResourceServerInfo: async () => ({
          scope: 'events:read',
          audience: 'events-api',
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    jwks: {
      keys: [{
        ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
        kid: 'es-1',
        alg: 'ES256',
        use: 'sig',
      }],
    },
  });
  server.on('request', provider.callback());

  const services = [];
  try {
    const start2 = async (required) => {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const env = {
        BIND: `127.0.0.1:${port}`,
        OAUTH2_ISSUER: issuer,
        OAUTH2_AUDIENCE: 'events-api',
        OAUTH2_DPOP_URL: url,
      };
      if (required) env.OAUTH2_DPOP_REQUIRED = '1';
      services.push(await start('protected_service', serviceBin, env, `${url}/public`));
      return url;
    };
    const allowed = await start2(false);
    const required = await start2(true);

    const as = await oauth.processDiscoveryResponse(
      new URL(issuer),
      await oauth.discoveryRequest(new URL(issuer), { algorithm: 'oidc', ...insecure }),
    );
    check(`${label}: advertises DPoP`, Array.isArray(as.dpop_signing_alg_values_supported), as);
    const client = { client_id: 'dpop-client' };
    const auth = oauth.ClientSecretBasic(clientSecret);
    const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
    const jkt = await DPoP.calculateThumbprint();
    const bound = await withNonceRetry(async () => oauth.processClientCredentialsResponse(
      as, client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'events:read' },
        { ...insecure, DPoP }),
    ));
    const claims = claimsOf(bound.result.access_token);
    check(`${label}: issues a DPoP-bound JWT (cnf.jkt)`,
      bound.result.token_type === 'dpop' && claims.cnf?.jkt === jkt, claims);

    for (const [name, url] of [['allowed', allowed], ['required', required]]) {
      const me = new URL(`${url}/me`);
      const ok = await oauth.protectedResourceRequest(
        bound.result.access_token, 'GET', me, new Headers(), null, { ...insecure, DPoP },
      );
      check(`${label}: protected_service (DPoP ${name}) accepts it with a matching proof`,
        ok.status === 200, `status ${ok.status}: ${await ok.text()}`);
      const otherKey = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
      const other = await apiError(bound.result.access_token, me, otherKey);
      check(`${label}: protected_service (DPoP ${name}) refuses another key's proof`,
        other === 'DPoP invalid_token', other);
      const asBearer = await apiError(bound.result.access_token, me, undefined);
      check(`${label}: protected_service (DPoP ${name}) refuses it as Bearer`,
        asBearer.endsWith('invalid_token'), asBearer);
    }
    // A bearer token from the same provider: accepted where DPoP is allowed, not where required.
    const bearer = await oauth.processClientCredentialsResponse(
      as, client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'events:read' }, insecure),
    );
    const onAllowed = await oauth.protectedResourceRequest(
      bearer.access_token, 'GET', new URL(`${allowed}/me`), new Headers(), null, insecure,
    );
    check(`${label}: an unbound token as Bearer passes where DPoP is allowed`,
      onAllowed.status === 200, `status ${onAllowed.status}`);
    const onRequired = await apiError(bearer.access_token, new URL(`${required}/me`), undefined);
    check(`${label}: an unbound token as Bearer is refused where DPoP is required`,
      onRequired === 'DPoP invalid_token', onRequired);
  } catch (err) {
    check(`${label}: no unexpected error`, false, `${err?.stack ?? err}\n${JSON.stringify(err?.cause ?? '')}`);
  } finally {
    services.forEach(stop);
    server.closeAllConnections();
    server.close();
  }
}

const demoBin = process.env.DEMO_BIN;
const serviceBin = process.env.SERVICE_BIN;
if (!demoBin || !serviceBin) {
  console.error('DEMO_BIN and SERVICE_BIN must name the built examples');
  process.exit(2);
}
await demoRun(demoBin, false);
await demoRun(demoBin, true);
await oidcProviderRun(serviceBin);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
