// A real OpenID provider for the SSO tests: npm's certified oidc-provider,
// over https, with its development login form (any password; the login
// names the account). Started by crates/warren/tests/sso.rs as
//   node provider.mjs CONFIG.json
// CONFIG: { port, cert, key, issuer, kid, clients: [...], accounts: { id: claims } }.
// It prints "listening PORT" once it serves. Each start signs with a new
// RSA key named `kid`, so a restart with another kid is a key rotation.
import Provider from 'oidc-provider';
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';

const conf = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: conf.kid, use: 'sig', alg: 'RS256' };

const provider = new Provider(conf.issuer, {
  clients: conf.clients,
  jwks: { keys: [jwk] },
  // Scope claims go in the ID token itself (what Warren reads).
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  findAccount: async (ctx, sub) => {
    const claims = conf.accounts[sub];
    if (!claims) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...claims }) };
  },
  // First-party client: consent is implied.
  loadExistingGrant: async (ctx) => {
    const id = ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (id) return ctx.oidc.provider.Grant.find(id);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
    await grant.save();
    return grant;
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = https.createServer(
  { cert: fs.readFileSync(conf.cert), key: fs.readFileSync(conf.key) },
  provider.callback(),
);
server.listen(conf.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
