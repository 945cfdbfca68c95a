"""The master keyring: AES-256-GCM blobs bound to their row, rotation by key id, clear errors that never echo a key."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from gateway.crypto import DecryptError, Keyring, KeyringError, generate_key

SECRETISH_KEY = base64.b64encode(b"SECRETISH" * 3 + b"SECRE").decode()  # a valid 32-byte key, easy to spot


def b64key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_round_trip_uses_fresh_nonces_and_hides_the_plaintext() -> None:
    ring = Keyring.generate()
    secret = b'{"api_key": "very-secret-value"}'
    kid1, blob1 = ring.encrypt(secret, b"row:1")
    kid2, blob2 = ring.encrypt(secret, b"row:1")
    assert kid1 == kid2 == "k1"
    assert blob1 != blob2
    assert b"very-secret-value" not in blob1
    assert ring.decrypt(kid1, blob1, b"row:1") == secret


def test_a_blob_does_not_open_on_another_row_or_when_tampered() -> None:
    ring = Keyring.generate()
    kid, blob = ring.encrypt(b"secret", b"emr_credentials:loc_a")
    with pytest.raises(DecryptError):
        ring.decrypt(kid, blob, b"emr_credentials:loc_b")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptError):
        ring.decrypt(kid, tampered, b"emr_credentials:loc_a")
    with pytest.raises(DecryptError, match="not in the keyring"):
        ring.decrypt("k9", blob, b"emr_credentials:loc_a")


def test_env_with_several_keys_encrypts_with_the_first_and_decrypts_with_all() -> None:
    old_key = b64key()
    old = Keyring.from_env({"EGW_MASTER_KEY": old_key})
    kid, blob = old.encrypt(b"secret", b"aad")
    assert kid == "k1"
    new_entry = generate_key("k2")
    assert new_entry.startswith("k2:")
    rotated = Keyring.from_env({"EGW_MASTER_KEY": f"{new_entry}, k1:{old_key}"})
    assert rotated.primary_key_id == "k2"
    assert rotated.key_ids == ["k2", "k1"]
    assert rotated.decrypt("k1", blob, b"aad") == b"secret"
    assert rotated.encrypt(b"x", b"aad")[0] == "k2"


def test_key_file_and_urlsafe_base64(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    path = tmp_path / "master.key"
    path.write_text(f"main:{base64.urlsafe_b64encode(raw).decode().rstrip('=')}\n")
    ring = Keyring.from_env({"EGW_MASTER_KEY_FILE": str(path)})
    assert ring.primary_key_id == "main"
    same = Keyring([("main", raw)])
    kid, blob = same.encrypt(b"v", b"a")
    assert ring.decrypt(kid, blob, b"a") == b"v"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no master key"),
        ({"EGW_MASTER_KEY": "   "}, "no master key"),
        ({"EGW_MASTER_KEY": "not base64 at all!!SECRETISH"}, "not valid base64"),
        ({"EGW_MASTER_KEY": base64.b64encode(b"SECRETISH-short").decode()}, "32 bytes"),
        ({"EGW_MASTER_KEY": "bad id!:" + base64.b64encode(b"SECRETISH" * 4).decode()[:44]}, "kid:base64key"),
        ({"EGW_MASTER_KEY": f"a:{SECRETISH_KEY},a:{SECRETISH_KEY}"}, "twice"),
        ({"EGW_MASTER_KEY_FILE": "/nonexistent/egw.key"}, "cannot read"),
        ({"EGW_MASTER_KEY": "x", "EGW_MASTER_KEY_FILE": "/x"}, "not both"),
    ],
)
def test_missing_or_malformed_keys_fail_clearly_without_echoing_the_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(KeyringError) as info:
        Keyring.from_env(environ)
    text = str(info.value)
    assert message in text
    for value in environ.values():
        if value.strip() and not value.startswith("/"):
            assert value not in text
    assert "SECRETISH" not in text
    assert "U0VDUkVUSVNI" not in text


def test_repr_shows_key_ids_only() -> None:
    raw = secrets.token_bytes(32)
    ring = Keyring([("k1", raw)])
    assert "k1" in repr(ring)
    assert base64.b64encode(raw).decode() not in repr(ring)
