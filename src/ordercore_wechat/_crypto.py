"""WeChat Pay API v3 cryptography: keys, request signatures, answer and notification
signatures, and the AES-256-GCM envelopes of notifications and platform certificates.

* A request is signed over ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`` (URL = path plus
  ``?query``, no host; BODY the exact bytes sent, empty for a GET) with the merchant's private
  key, SHA256withRSA (PKCS#1 v1.5), base64 (:func:`request_message`, :func:`authorization`).
* An answer or a notification is verified over ``TIMESTAMP\\nNONCE\\nBODY\\n`` — the raw
  bytes received — with the platform key its ``Wechatpay-Serial`` names
  (:func:`answer_message`, :func:`verify`). A signature starting ``WECHATPAY/SIGNTEST/`` is
  WeChat's deliberate probe and never verifies.
* A notification's ``resource`` (and each platform certificate from ``/v3/certificates``) is
  AES-256-GCM: key = the 32 ASCII bytes of the APIv3 key, nonce = the 12-byte nonce string,
  AAD = ``associated_data`` (UTF-8, may be empty), ``ciphertext`` = base64 of
  ciphertext‖16-byte tag (:func:`decrypt`, :func:`encrypt`).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "AUTH_SCHEME",
    "SIGNATURE_TYPE",
    "SIGNTEST_PREFIX",
    "CryptoError",
    "answer_message",
    "authorization",
    "certificate_serial",
    "decrypt",
    "encrypt",
    "load_apiv3_key",
    "load_certificates",
    "load_private_key",
    "load_public_keys",
    "make_nonce",
    "parse_authorization",
    "public_pem",
    "request_message",
    "sign",
    "verify",
]

#: The scheme of the ``Authorization`` header and the ``Wechatpay-Signature-Type`` value.
AUTH_SCHEME: Final = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE: Final = AUTH_SCHEME
#: WeChat's deliberately wrong signatures (it checks that merchants verify): always refused.
SIGNTEST_PREFIX: Final = "WECHATPAY/SIGNTEST/"
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s.*?-----END \1-----", re.DOTALL)
_AUTH_PARAM: Final = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*(?:,|$)')
_NONCE_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_AUTH_FIELDS: Final = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")


class CryptoError(ValueError):
    """Key material or an envelope that cannot be used."""


# -- keys ------------------------------------------------------------------------------------
def load_private_key(data: bytes) -> rsa.RSAPrivateKey:
    """The merchant's RSA private key from PEM (PKCS#8 ``PRIVATE KEY`` as the merchant
    console's ``apiclient_key.pem`` holds it; PKCS#1 ``RSA PRIVATE KEY`` is accepted too),
    unencrypted, at least 2048 bits."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CryptoError(f"not an unencrypted RSA private key in PEM ({exc})"[:300]) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CryptoError(f"not an RSA private key but {type(key).__name__}")
    if key.key_size < 2048:
        raise CryptoError(f"the RSA key has {key.key_size} bits; WeChat Pay needs 2048")
    return key


def load_public_keys(data: bytes) -> list[rsa.RSAPublicKey]:
    """Every RSA public key of a PEM file (``PUBLIC KEY`` blocks), in file order: the
    platform public key(s) the merchant console gives (``pub_key.pem``)."""
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data) if m.group(1) == b"PUBLIC KEY"]
    if not blocks:
        raise CryptoError("no PEM PUBLIC KEY block found")
    keys: list[rsa.RSAPublicKey] = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CryptoError(f"a public key cannot be read ({exc})"[:300]) from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise CryptoError(f"not an RSA public key but {type(key).__name__}")
        keys.append(key)
    return keys


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order."""
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data) if m.group(1) == b"CERTIFICATE"]
    if not blocks:
        raise CryptoError("no PEM certificate found")
    try:
        certificates = [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as exc:
        raise CryptoError(f"a certificate cannot be read ({exc})"[:300]) from None
    for certificate in certificates:
        if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
            raise CryptoError("a certificate does not hold an RSA key")
    return certificates


def certificate_serial(certificate: x509.Certificate) -> str:
    """A certificate's serial number as WeChat writes it: upper-case hex, no leading zeros."""
    return f"{certificate.serial_number:X}"


def public_pem(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> bytes:
    """The public half as a ``PUBLIC KEY`` PEM."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_apiv3_key(data: bytes) -> bytes:
    """The APIv3 key: exactly 32 printable ASCII bytes (one trailing line break, as an
    editor leaves it, is dropped)."""
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if len(data) != 32:
        raise CryptoError(f"the APIv3 key must be 32 ASCII characters, not {len(data)} bytes")
    if not all(0x21 <= b <= 0x7E for b in data):
        raise CryptoError("the APIv3 key must be printable ASCII (no spaces)")
    return data


# -- signatures ------------------------------------------------------------------------------
def make_nonce(length: int = 32) -> str:
    """A random nonce of upper-case letters and digits."""
    return "".join(secrets.choice(_NONCE_CHARS) for _ in range(length))


def request_message(method: str, url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n``: what a request's signature covers."""
    head = f"{method}\n{url}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def answer_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """``TIMESTAMP\\nNONCE\\nBODY\\n``: what an answer's or a notification's signature covers
    (an empty body gives ``TIMESTAMP\\nNONCE\\n\\n``)."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign(message: bytes, key: rsa.RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over ``message``, standard base64."""
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify(message: bytes, signature: str, key: rsa.RSAPublicKey) -> bool:
    """Whether ``signature`` (base64) is ``key``'s SHA256withRSA signature of ``message``.
    Never raises; a ``WECHATPAY/SIGNTEST/`` probe or garbled base64 is False."""
    if signature.startswith(SIGNTEST_PREFIX):
        return False
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError, UnicodeError):
        return False
    return True


def authorization(
    *,
    mchid: str,
    serial_no: str,
    key: rsa.RSAPrivateKey,
    method: str,
    url: str,
    body: bytes,
    timestamp: str,
    nonce: str,
) -> str:
    """The ``Authorization`` header of one request."""
    signature = sign(request_message(method, url, timestamp, nonce, body), key)
    return (
        f'{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(header: str) -> Mapping[str, str]:
    """The parameters of an ``Authorization`` header (the sandbox reads requests with it).
    ``ValueError`` unless it is the v3 scheme with each of the five parameters once."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme != AUTH_SCHEME:
        raise ValueError(f"the scheme is not {AUTH_SCHEME}")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _AUTH_PARAM.match(rest, position)
        if match is None:
            raise ValueError("a garbled Authorization parameter")
        name, value = match.group(1), match.group(2)
        if name in params:
            raise ValueError(f"{name} appears twice")
        params[name] = value
        position = match.end()
    missing = [f for f in _AUTH_FIELDS if f not in params]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return params


# -- AES-256-GCM -----------------------------------------------------------------------------
def decrypt(key: bytes, nonce: str, associated_data: str, ciphertext: str) -> bytes:
    """Open an AEAD_AES_256_GCM envelope. ``CryptoError`` when the nonce is not 12 bytes,
    the ciphertext is not base64 of at least a tag, or the tag does not match (a wrong key,
    a changed byte anywhere, other associated data)."""
    try:
        nonce_bytes = nonce.encode("utf-8")
        aad = associated_data.encode("utf-8")
        data = base64.b64decode(ciphertext.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError):
        raise CryptoError("the ciphertext is not base64") from None
    if len(nonce_bytes) != 12:
        raise CryptoError(f"the nonce must be 12 bytes, not {len(nonce_bytes)}")
    if len(data) < 16:
        raise CryptoError("the ciphertext is shorter than its tag")
    try:
        return AESGCM(key).decrypt(nonce_bytes, data, aad)
    except InvalidTag:
        raise CryptoError("the GCM tag does not match (wrong APIv3 key or altered data)") from None
    except ValueError as exc:
        raise CryptoError(f"cannot decrypt ({exc})") from None


def encrypt(key: bytes, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """Seal ``plaintext`` the way WeChat does (the sandbox's side): base64 of
    ciphertext‖tag."""
    sealed = AESGCM(key).encrypt(nonce.encode("utf-8"), plaintext, associated_data.encode("utf-8"))
    return base64.b64encode(sealed).decode("ascii")
