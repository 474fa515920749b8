// A real OAuth 2.0 authorization server for latchkey's tests: oidc-provider (a certified
// implementation) on loopback, with one confidential test client that may use the
// authorization code grant with PKCE, rotating refresh tokens and client credentials.
//
//   node server.mjs            # settings from the environment, see below
//
// Environment:
//   PORT                  port on 127.0.0.1 (0, the default, picks a free one)
//   REDIRECT_URIS         comma-separated exact redirect URIs of the test client
//   CLIENT_ID, CLIENT_SECRET   the test client (defaults below)
//   ACCESS_TOKEN_TTL      access token lifetime in seconds (default 3600)
//
// Once listening it prints one JSON line on stdout: {"issuer": "...", "port": N}.
// Test hooks, on the same port (loopback only, never part of a real provider):
//   GET  /_test/stats     {"grants": {"authorization_code": n, "refresh_token": n, "client_credentials": n},
//                          "token_requests": n, "held": n}: grants made, calls to the token
//                          endpoint (refused ones too), calls being held (see delay)
//   POST /_test/outage    body "on" or "off": the token endpoint answers 503 while on
//   POST /_test/revoke    revokes every grant, as a user disconnecting the app would
//   POST /_test/delay     body: milliseconds the token endpoint holds each call before
//                         handling it (0: none); a call whose client went away meanwhile
//                         is dropped unhandled, as one that never arrived
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT ?? 0);
const clientId = process.env.CLIENT_ID ?? 'latchkey-test';
const clientSecret = process.env.CLIENT_SECRET ?? 'latchkey-test-secret-0123456789abcdef';
const redirectUris = (process.env.REDIRECT_URIS ?? 'http://127.0.0.1/callback').split(',').filter(Boolean);
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL ?? 3600);

const grants = { authorization_code: 0, refresh_token: 0, client_credentials: 0 };
let outage = false;
let delayMs = 0;
let held = 0;
let tokenRequests = 0;
const liveGrants = new Set();

const server = createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'openid offline_access contacts.read contacts.write',
    },
  ],
  scopes: ['openid', 'offline_access', 'contacts.read', 'contacts.write'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
  },
  // Every authorization code grant gets a refresh token, as the OAuth APIs latchkey
  // connects to do; each use of one rotates it, invalidating the old one.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    AuthorizationCode: 60,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Interaction: 600,
    Session: 3600,
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  loadExistingGrant: async (ctx) => {
    // Consent once per client and account, as a real provider remembers it.
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
});
provider.proxy = false;

provider.on('grant.success', (ctx) => {
  const type = ctx.oidc.params.grant_type;
  if (type in grants) grants[type] += 1;
});
provider.on('grant.saved', (grant) => liveGrants.add(grant.jti));

provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/stats' && ctx.method === 'GET') {
    ctx.body = { grants, token_requests: tokenRequests, held };
    return;
  }
  if (ctx.path === '/_test/delay' && ctx.method === 'POST') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    delayMs = Number(Buffer.concat(chunks).toString().trim()) || 0;
    ctx.body = { delay: delayMs };
    return;
  }
  if (ctx.path === '/_test/outage' && ctx.method === 'POST') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    outage = Buffer.concat(chunks).toString().trim() === 'on';
    ctx.body = { outage };
    return;
  }
  if (ctx.path === '/_test/revoke' && ctx.method === 'POST') {
    for (const jti of liveGrants) {
      const grant = await provider.Grant.find(jti);
      if (grant) await grant.destroy();
      await provider.RefreshToken.revokeByGrantId(jti);
      await provider.AccessToken.revokeByGrantId(jti);
    }
    liveGrants.clear();
    ctx.body = { revoked: true };
    return;
  }
  if (ctx.path === '/token' && delayMs > 0) {
    held += 1;
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    held -= 1;
    if (ctx.req.destroyed || ctx.req.socket.destroyed) {
      ctx.respond = false;
      return;
    }
  }
  if (ctx.path === '/token') tokenRequests += 1;
  if (outage && ctx.path === '/token') {
    ctx.status = 503;
    ctx.body = { error: 'temporarily_unavailable' };
    return;
  }
  await next();
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer, port: server.address().port })}\n`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
export { errors };
