// oidc-provider 9 as the reference authorization server for scripts/as_bench.sh and the same
// grants as the demo: one confidential client (client_secret_basic) with client_credentials and
// refresh_token, ES256 JWT access tokens (RFC 9068 profile, via resource indicators), refresh
// tokens rotated on every use, introspection and revocation on.
//
//   node as_bench.mjs --client-id ID --client-secret SECRET [--port 0]
//
// Listens on 127.0.0.1 (port 0: any free one) with the issuer `http://127.0.0.1:PORT` and prints
// one line `READY {"issuer", "token_endpoint", "introspection_endpoint",
// "revocation_endpoint", "resources": {...}}` on stdout. Stops on SIGTERM / SIGINT.
//
// Resources (RFC 8707), both with audience `events-api` and scopes `events:read events:write`:
//   urn:events-api:jwt     ES256 JWT access tokens; the default when a request names none
//   urn:events-api:opaque  opaque access tokens
// oidc-provider does not introspect or revoke JWT access tokens ("Structured JWT Tokens cannot
// be introspected / revoked": 400 unsupported_token_type), so the introspection and revocation
// scenarios ask for `resource=urn:events-api:opaque`: those tokens are stored and can be.
//
// State is kept in oidc-provider's default in-memory adapter (an LRU of 1000 entries per
// process, no persistence): the demo it is compared with writes every token to a database.
//
// The refresh grant needs refresh tokens to start from, and oidc-provider hands them out only
// through authorization_code (an interactive login) or device/CIBA flows. `POST /bench/seed?n=N`
// (outside the provider's routes, for the benchmark only) creates N grants for account `bench`
// and one refresh token in each (scopes `events:read events:write`, resource
// urn:events-api:jwt), as the authorization_code grant would, and answers them one a line.
// Every rotation after that goes through the provider's own refresh_token grant.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    port: { type: 'string', default: '0' },
  },
});
if (!args['client-id'] || !args['client-secret']) {
  console.error('usage: node as_bench.mjs --client-id ID --client-secret SECRET [--port N]');
  process.exit(2);
}

const AUDIENCE = 'events-api';
const SCOPE = 'events:read events:write';
const RESOURCES = { jwt: 'urn:events-api:jwt', opaque: 'urn:events-api:opaque' };
const ACCOUNT = 'bench';

const instance = randomBytes(4).toString('hex');
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keys = [{ ...privateKey.export({ format: 'jwk' }), kid: `es256-${instance}`, alg: 'ES256', use: 'sig' }];

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: args['client-id'],
    client_secret: args['client-secret'],
    grant_types: ['client_credentials', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    // The only key is P-256 (the default, RS256, has none).
    id_token_signed_response_alg: 'ES256',
    scope: SCOPE,
  }],
  scopes: ['openid', 'offline_access', ...SCOPE.split(' ')],
  jwks: { keys },
  // As long as the demo's defaults: access tokens 1 h.
  ttl: { AccessToken: 3600, ClientCredentials: 3600, RefreshToken: 14 * 24 * 3600, Grant: 14 * 24 * 3600 },
  rotateRefreshToken: true,
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCES.jwt,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator === RESOURCES.jwt) {
          return { scope: SCOPE, audience: AUDIENCE, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
        }
        if (resourceIndicator === RESOURCES.opaque) {
          return { scope: SCOPE, audience: AUDIENCE, accessTokenFormat: 'opaque' };
        }
        throw new Provider.errors.InvalidTarget();
      },
    },
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error:', err));

// N grants with one refresh token each, as the authorization_code grant would leave them.
async function seed(n) {
  const client = await provider.Client.find(args['client-id']);
  const tokens = [];
  for (let i = 0; i < n; i += 1) {
    const grant = new provider.Grant({ accountId: ACCOUNT, clientId: client.clientId });
    grant.addResourceScope(RESOURCES.jwt, SCOPE);
    const grantId = await grant.save();
    const refresh = new provider.RefreshToken({
      accountId: ACCOUNT,
      client,
      grantId,
      gty: 'authorization_code',
      scope: SCOPE,
      resource: RESOURCES.jwt,
      authTime: Math.floor(Date.now() / 1000),
    });
    tokens.push(await refresh.save());
  }
  return tokens;
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname !== '/bench/seed') {
    callback(req, res);
    return;
  }
  const n = Number(url.searchParams.get('n') ?? '1');
  if (req.method !== 'POST' || !Number.isInteger(n) || n < 1 || n > 1000) {
    res.writeHead(400).end('POST /bench/seed?n=1..1000\n');
    return;
  }
  seed(n).then(
    (tokens) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`${tokens.join('\n')}\n`),
    (err) => {
      console.error('seed:', err);
      res.writeHead(500).end(`${err}\n`);
    },
  );
});

const metadata = {
  issuer,
  token_endpoint: `${issuer}/token`,
  introspection_endpoint: `${issuer}/token/introspection`,
  revocation_endpoint: `${issuer}/token/revocation`,
  resources: RESOURCES,
};
process.stdout.write(`READY ${JSON.stringify(metadata)}\n`);

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
