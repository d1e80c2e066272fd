// A throwaway oidc-provider 9 for scripts/interop_oidc_provider.sh: one client_credentials
// client, JWT access tokens for the `events-api` audience signed with ES256 or RS256, opaque
// ones for the same audience, and introspection (RFC 7662) for the resource server's client
// `events-api-rs` (its secret: the client secret followed by `-rs`).
//
//   node server.mjs --client-id ID --client-secret SECRET [--port 0]
//
// Listens on 127.0.0.1 (port 0: any free one) with the issuer `http://127.0.0.1:PORT`, then
// prints one line `READY {"issuer", "token_endpoint", "resources": {alg: resource},
// "kids": {alg: kid}}` on stdout. Signing keys are generated at every start, so two instances never share
// one. Resources (RFC 8707), one per signing algorithm and one for opaque tokens, all with
// audience `events-api`:
//   urn:events-api:es256  (the default resource when a request names none)
//   urn:events-api:rs256
//   urn:events-api:opaque
// Stops on SIGTERM / SIGINT.

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
  console.error('usage: node server.mjs --client-id ID --client-secret SECRET [--port N]');
  process.exit(2);
}

const AUDIENCE = 'events-api';
const SCOPE = 'events:read events:write profile';
const RESOURCES = {
  ES256: 'urn:events-api:es256',
  RS256: 'urn:events-api:rs256',
  opaque: 'urn:events-api:opaque',
};
const BY_RESOURCE = Object.fromEntries(Object.entries(RESOURCES).map(([alg, r]) => [r, alg]));

// Fresh keys at every start, exported as private JWKs with kid and alg.
const instance = randomBytes(4).toString('hex');
function signingJwk(alg, type, options) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${alg.toLowerCase()}-${instance}`, alg, use: 'sig' };
}
const keys = [
  signingJwk('ES256', 'ec', { namedCurve: 'P-256' }),
  signingJwk('RS256', 'rsa', { modulusLength: 2048 }),
];

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
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPE,
  }, {
    // The resource server: it only introspects.
    client_id: 'events-api-rs',
    client_secret: `${args['client-secret']}-rs`,
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: ['openid', 'offline_access', ...SCOPE.split(' ')],
  jwks: { keys },
  ttl: { AccessToken: 5 * 60, ClientCredentials: 5 * 60 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request without `resource` gets the ES256 resource server.
      defaultResource: async () => RESOURCES.ES256,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const alg = BY_RESOURCE[resourceIndicator];
        if (!alg) throw new Provider.errors.InvalidTarget();
        if (alg === 'opaque') {
          return { scope: SCOPE, audience: AUDIENCE, accessTokenFormat: 'opaque' };
        }
        return {
          scope: SCOPE,
          audience: AUDIENCE,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error:', err));
provider.on('grant.error', (_ctx, err) => console.error('grant.error:', err.message, err.error_description ?? ''));
server.on('request', provider.callback());

const metadata = {
  issuer,
  token_endpoint: `${issuer}/token`,
  resources: RESOURCES,
  kids: Object.fromEntries(keys.map((k) => [k.alg, k.kid])),
  introspection_client: { id: 'events-api-rs', secret: `${args['client-secret']}-rs` },
};
// oidc-provider prints its own notices on stdout too: the checker looks for this prefix.
process.stdout.write(`READY ${JSON.stringify(metadata)}\n`);

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
