"""Marketplace webhook signatures over the raw body: `X-GHL-Signature` (Ed25519, current) and `x-wh-signature`
(RSA PKCS#1 v1.5 / SHA-256, legacy). Checked in that order, like GHL's own SDK: when the current header is present,
it alone decides."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

ED25519_HEADER = "x-ghl-signature"
RSA_HEADER = "x-wh-signature"

# GHL's published Ed25519 webhook key (SPKI, base64), per reference/notes/emr-jane-sp-pb-ghl.md §4.2 (second-hand:
# override with EGW_GHL_ED25519_PUBLIC_KEY if GHL's Webhook Integration Guide shows another). The notes hold only
# the beginning of the legacy RSA key, so that one has no default: set EGW_GHL_RSA_PUBLIC_KEY to accept x-wh-signature.
GHL_ED25519_PUBLIC_KEY = "MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg="


class KeyFormatError(ValueError):
    pass


def _der_or_pem(text: str) -> object:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return serialization.load_pem_public_key(text.encode())
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("not PEM and not base64") from None
    if len(raw) == 32:
        return Ed25519PublicKey.from_public_bytes(raw)
    return serialization.load_der_public_key(raw)


@lru_cache(maxsize=8)
def load_ed25519(text: str) -> Ed25519PublicKey:
    key = _der_or_pem(text)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError("EGW_GHL_ED25519_PUBLIC_KEY is not an Ed25519 public key")
    return key


@lru_cache(maxsize=8)
def load_rsa(text: str) -> RSAPublicKey:
    key = _der_or_pem(text)
    if not isinstance(key, RSAPublicKey):
        raise KeyFormatError("EGW_GHL_RSA_PUBLIC_KEY is not an RSA public key")
    return key


def _b64(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def verify(
    body: bytes,
    ed25519_signature: str | None,
    rsa_signature: str | None,
    *,
    ed25519_key: str | None,
    rsa_key: str | None,
) -> str | None:
    """None when the body is authentic; otherwise why not (safe to show: it names headers and settings only)."""
    if ed25519_signature:
        if not ed25519_key:
            return "X-GHL-Signature cannot be checked: EGW_GHL_ED25519_PUBLIC_KEY is empty"
        sig = _b64(ed25519_signature)
        if sig is None:
            return "X-GHL-Signature is not base64"
        try:
            load_ed25519(ed25519_key).verify(sig, body)
        except InvalidSignature:
            return "X-GHL-Signature does not match the body"
        return None
    if rsa_signature:
        if not rsa_key:
            return "x-wh-signature cannot be checked: EGW_GHL_RSA_PUBLIC_KEY is not set"
        sig = _b64(rsa_signature)
        if sig is None:
            return "x-wh-signature is not base64"
        try:
            load_rsa(rsa_key).verify(sig, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "x-wh-signature does not match the body"
        return None
    return "missing X-GHL-Signature (or legacy x-wh-signature) header"
