#!/usr/bin/env bash
# Makes the test keys of tests/auth.rs: private keys (to sign test tokens),
# their public keys in PEM (for --jwt-public-key) and as JWKs (for a JWKS).
# Test keys only: they sign nothing but the tests' tokens. Run from this folder.
set -euo pipefail
for name in rsa-a rsa-b; do
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.pem"
done
for name in ec-a ec-b; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.pem"
done
for name in rsa-a rsa-b ec-a ec-b; do
    openssl pkey -in "$name.pem" -pubout -out "$name.pub.pem"
done
# A JWK per key, its kid the file's name.
for name in rsa-a rsa-b; do
    modulus=$(openssl rsa -pubin -in "$name.pub.pem" -modulus -noout | cut -d= -f2)
    python3 -c 'import sys, base64, json
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
print(json.dumps({"kty": "RSA", "kid": sys.argv[1], "use": "sig", "n": b64(bytes.fromhex(sys.argv[2])), "e": "AQAB"}))' \
        "$name" "$modulus" > "$name.jwk.json"
done
for name in ec-a ec-b; do
    # The uncompressed point: 04, then x and y (32 bytes each).
    point=$(openssl pkey -pubin -in "$name.pub.pem" -outform DER | tail -c 65 | xxd -p | tr -d '\n')
    python3 -c 'import sys, base64, json
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
point = bytes.fromhex(sys.argv[2])
print(json.dumps({"kty": "EC", "kid": sys.argv[1], "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:])}))' \
        "$name" "$point" > "$name.jwk.json"
done
