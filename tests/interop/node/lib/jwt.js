// HS256 tokens for the tests' issuer, minted here as an identity provider would.
import { createHmac } from 'node:crypto';

export const ISSUER = 'herald-interop-test';
export const SECRET = 'interop-test-secret-that-is-long-enough-for-hs256';

/** The [auth] section that makes Herald accept the tokens `mint` signs. */
export const AUTH_CONFIG = `
[auth]
leeway = "0s"
[[auth.issuers]]
issuer = "${ISSUER}"
secret = "${SECRET}"
`;

const b64url = (data) => Buffer.from(data).toString('base64url');

/** A token for `sub` that expires in `ttlSeconds`. */
export function mint(sub, ttlSeconds, { roles = [], issuer = ISSUER, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ iss: issuer, sub, roles, iat: now, exp: now + ttlSeconds }));
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}
