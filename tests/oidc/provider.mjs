// A real OpenID Connect provider for the single sign-on tests: node oidc-provider, with its
// development sign-in and consent pages (any password; the login is the account, and the
// subject of its ID tokens).
//
//   node tests/oidc/provider.mjs
//   VALET_OIDC_ACCOUNTS='{"alice": {"email": "Alice@Example.com", "email_verified": true}}'
//
// It listens on 127.0.0.1, port 0, first, so that the issuer can name the port it got; then
// prints "oidc-provider ready on ISSUER" on stdout. Valet Upload is registered as a native
// public client whose redirect is http://127.0.0.1/callback: for native clients oidc-provider
// accepts that loopback redirect on any port (RFC 8252 §7.3), as real providers do.
import { randomBytes } from 'node:crypto';
import http from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const accounts = JSON.parse(process.env.VALET_OIDC_ACCOUNTS || '{}');

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

// A fresh signing key each start: nothing signed by an earlier run verifies.
const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), kid: 'valet-test-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'valet-upload',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
  }, {
    // Another application of the same organisation: its ID tokens are not for Valet Upload.
    client_id: 'other-app',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // The email claims go into the ID token itself (the service reads no userinfo).
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { ...account, sub: id };
      },
    };
  },
});

server.on('request', provider.callback());
process.on('SIGTERM', () => server.close(() => process.exit(0)));
console.log(`oidc-provider ready on ${issuer}`);
