#!/usr/bin/env python3
"""JWT-SVIDs and JWT bundles minted by an implementation independent of zt:
PyJWT for the tokens, cryptography for the keys.

Usage: jwt_mint.py OUT_DIR AUDIENCE

Writes OUT_DIR/<trust domain>.json (SPIFFE bundle documents with `jwt-svid`
keys) and prints one JSON object on stdout: {"bundles": {td: path},
"tokens": {name: token}}. Every token names AUDIENCE unless its name says
otherwise. Keys: example.org has an EC P-256 key `ec1`, an EC P-384 key `ec2`
and an RSA-2048 key `rsa1`; partner.org has an EC P-256 key `partner1`.
"""

import base64
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def ec_jwk(key, kid, crv, size):
    numbers = key.public_key().public_numbers()
    return {"use": "jwt-svid", "kty": "EC", "kid": kid, "crv": crv,
            "x": b64url(int_bytes(numbers.x, size)), "y": b64url(int_bytes(numbers.y, size))}


def rsa_jwk(key, kid):
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {"use": "jwt-svid", "kty": "RSA", "kid": kid, "n": b64url(n), "e": b64url(e)}


def unsigned(header, claims, signature=b""):
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                     b64url(signature)])


def main():
    out, audience = sys.argv[1], sys.argv[2]
    ec1 = ec.generate_private_key(ec.SECP256R1())
    ec2 = ec.generate_private_key(ec.SECP384R1())
    rsa1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    partner1 = ec.generate_private_key(ec.SECP256R1())

    bundles = {
        "example.org": {"keys": [ec_jwk(ec1, "ec1", "P-256", 32), ec_jwk(ec2, "ec2", "P-384", 48),
                                 rsa_jwk(rsa1, "rsa1")], "spiffe_sequence": 1},
        "partner.org": {"keys": [ec_jwk(partner1, "partner1", "P-256", 32)]},
    }
    paths = {}
    for td, doc in bundles.items():
        path = os.path.join(out, td + ".json")
        with open(path, "w") as f:
            json.dump(doc, f)
        paths[td] = path

    now = int(time.time())
    frontend = "spiffe://example.org/frontend"
    batch = "spiffe://example.org/batch"

    def claims(sub=frontend, aud=audience, exp=now + 600, **extra):
        c = {"sub": sub, "aud": aud, "exp": exp, "iat": now}
        c.update(extra)
        return c

    def sign(key, alg, kid, c, **headers):
        return jwt.encode(c, key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **headers})

    ec1_public_pem = ec1.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    valid = sign(ec1, "ES256", "ec1", claims())
    header, payload, signature = valid.split(".")
    tampered_claims = b64url(json.dumps(claims(sub="spiffe://example.org/admin")).encode())
    no_exp = claims()
    del no_exp["exp"]
    no_aud = claims()
    del no_aud["aud"]

    tokens = {
        "valid_es256": valid,
        "valid_es384": sign(ec2, "ES384", "ec2", claims()),
        "valid_rs256": sign(rsa1, "RS256", "rsa1", claims()),
        "valid_ps256": sign(rsa1, "PS256", "rsa1", claims()),
        "valid_batch": sign(ec1, "ES256", "ec1", claims(sub=batch)),
        "valid_audience_list": sign(ec1, "ES256", "ec1", claims(aud=["other", audience])),
        "short_lived": sign(ec1, "ES256", "ec1", claims(exp=now + 6)),
        "valid_partner": sign(partner1, "ES256", "partner1", claims(sub="spiffe://partner.org/app")),
        "alg_none": unsigned({"alg": "none", "kid": "ec1", "typ": "JWT"}, claims()),
        # HMAC keyed with the public key the verifier trusts: algorithm confusion.
        "hs256_with_public_key": unsigned(
            {"alg": "HS256", "kid": "ec1", "typ": "JWT"}, claims(),
            hmac.new(ec1_public_pem, (
                b64url(json.dumps({"alg": "HS256", "kid": "ec1", "typ": "JWT"}).encode()) + "."
                + b64url(json.dumps(claims()).encode())).encode(), "sha256").digest()),
        "rs256_header_on_ec_key": sign(rsa1, "RS256", "ec1", claims()),
        "wrong_audience": sign(ec1, "ES256", "ec1", claims(aud="someone-else")),
        "expired": sign(ec1, "ES256", "ec1", claims(exp=now - 3600)),
        "not_yet_valid": sign(ec1, "ES256", "ec1", claims(nbf=now + 3600)),
        "missing_exp": sign(ec1, "ES256", "ec1", no_exp),
        "missing_aud": sign(ec1, "ES256", "ec1", no_aud),
        "sub_not_spiffe": sign(ec1, "ES256", "ec1", claims(sub="frontend")),
        "unknown_kid": sign(ec1, "ES256", "nope", claims()),
        "missing_kid": jwt.encode(claims(), ec1, algorithm="ES256"),
        # Signed by partner.org's key, for an example.org subject.
        "kid_from_other_domain": sign(partner1, "ES256", "partner1", claims()),
        "tampered_payload": ".".join([header, tampered_claims, signature]),
        "critical_header": sign(ec1, "ES256", "ec1", claims(), crit=["exp"]),
        "huge": sign(ec1, "ES256", "ec1", claims(pad="x" * (1024 * 1024))),
        "malformed_base64": header + ".%%%." + signature,
        "malformed_json": b64url(b"{not json") + "." + payload + "." + signature,
        "two_parts": header + "." + payload,
    }
    json.dump({"bundles": paths, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
