#!/usr/bin/env python3
"""Verifies a Quizwire access token with PyJWT, a JWT library outside Swift.

Usage: verify_jwt.py JWKS_FILE TOKEN_FILE ISSUER AUDIENCE
Prints the claims as JSON and exits 0 when the token verifies; exits 1 with the reason
otherwise. The key is chosen by the token's `kid` from the JWK Set, the algorithm is pinned
to the key's `alg`, and `typ` must be `at+jwt` (RFC 9068)."""
import json
import sys

import jwt


def main() -> int:
    jwks_path, token_path, issuer, audience = sys.argv[1:5]
    with open(jwks_path) as f:
        jwks = jwt.PyJWKSet.from_json(f.read())
    with open(token_path) as f:
        token = f.read().strip()
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt":
            raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, not at+jwt")
        matches = [k for k in jwks.keys if k.key_id == header.get("kid")]
        if not matches:
            raise jwt.InvalidTokenError(f"no key with kid {header.get('kid')!r}")
        key = matches[0]
        claims = jwt.decode(
            token, key=key.key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})
    except jwt.PyJWTError as error:
        print(f"rejected: {error}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
