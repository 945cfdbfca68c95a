"""Encryption at rest: AES-256-GCM under a keyring whose key ids let the master key rotate without downtime."""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32
DEFAULT_KEY_ID = "k1"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
ENV_KEY = "EGW_MASTER_KEY"
ENV_KEY_FILE = "EGW_MASTER_KEY_FILE"
GENERATE_HINT = "generate one with `emr-gateway generate-master-key`"


class KeyringError(ValueError):
    """The master key is missing or malformed. Messages never contain key material."""


class DecryptError(Exception):
    """A blob cannot be opened: unknown key id, wrong row (aad), or tampered data."""


def generate_key(key_id: str = DEFAULT_KEY_ID) -> str:
    """A fresh `kid:base64key` entry, ready for EGW_MASTER_KEY."""
    if not KEY_ID_RE.match(key_id):
        raise KeyringError("key id must be 1-32 characters of letters, digits, '_', '.', '-'")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode('ascii')}"


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = (
            base64.urlsafe_b64decode(padded)
            if ("-" in text or "_" in text)
            else base64.b64decode(padded, validate=True)
        )
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where}: key is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyringError(f"{where}: key must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return raw


class Keyring:
    """The first key encrypts; every key decrypts what was written under its id."""

    __slots__ = ("_aead", "_primary")

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyringError("the keyring is empty")
        aead: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not KEY_ID_RE.match(key_id):
                raise KeyringError(f"invalid key id {key_id!r}")
            if key_id in aead:
                raise KeyringError(f"key id {key_id!r} appears twice")
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {key_id!r} must be {KEY_BYTES} bytes")
            aead[key_id] = AESGCM(key)
        self._aead = aead
        self._primary = keys[0][0]

    def __repr__(self) -> str:
        return f"Keyring(primary={self._primary!r}, key_ids={list(self._aead)!r})"

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> list[str]:
        return list(self._aead)

    @classmethod
    def generate(cls, key_id: str = DEFAULT_KEY_ID) -> Keyring:
        return cls([(key_id, secrets.token_bytes(KEY_BYTES))])

    @classmethod
    def parse(cls, text: str, *, source: str = ENV_KEY) -> Keyring:
        """`kid:base64,kid:base64,…` (first is primary) or one bare base64 key (id "k1")."""
        entries = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
        if not entries:
            raise KeyringError(f"{source} is empty; {GENERATE_HINT}")
        if len(entries) == 1 and ":" not in entries[0]:
            return cls([(DEFAULT_KEY_ID, _decode_key(entries[0], source))])
        keys: list[tuple[str, bytes]] = []
        for index, entry in enumerate(entries, start=1):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep or not KEY_ID_RE.match(key_id):
                raise KeyringError(f"{source}: entry {index} is not `kid:base64key` (kid: letters, digits, _ . -)")
            keys.append((key_id, _decode_key(encoded, f"{source} entry {key_id!r}")))
        return cls(keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        env = os.environ if environ is None else environ
        inline = env.get(ENV_KEY, "").strip()
        path = env.get(ENV_KEY_FILE, "").strip()
        if inline and path:
            raise KeyringError(f"set either {ENV_KEY} or {ENV_KEY_FILE}, not both")
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise KeyringError(f"{ENV_KEY_FILE}: cannot read {path}: {exc.strerror}") from None
            return cls.parse(text, source=ENV_KEY_FILE)
        if inline:
            return cls.parse(inline, source=ENV_KEY)
        raise KeyringError(f"no master key: set {ENV_KEY} or {ENV_KEY_FILE}; {GENERATE_HINT}")

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """Returns (key_id, nonce || ciphertext || tag). `aad` names the row so blobs cannot be swapped."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return self._primary, nonce + self._aead[self._primary].encrypt(nonce, plaintext, aad)

    def decrypt(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        aead = self._aead.get(key_id)
        if aead is None:
            raise DecryptError(f"key id {key_id!r} is not in the keyring (was it removed before rotate-master-key?)")
        if len(blob) < NONCE_BYTES + 16:
            raise DecryptError("ciphertext is truncated")
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptError("ciphertext does not authenticate (wrong key, wrong row, or tampered)") from None
