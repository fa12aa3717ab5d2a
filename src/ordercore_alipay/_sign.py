"""Alipay's RSA2 signatures: keys, the strings that are signed, and the signed part of a
synchronous response.

* A request is signed over every parameter except ``sign`` (``sign_type`` included), with
  empty values dropped, sorted by key, joined as ``k=v`` with ``&``, nothing URL-encoded
  (:func:`request_sign_content`).
* A notification is verified over every parameter except ``sign`` and ``sign_type``, empty
  values dropped, the same way (:func:`notification_sign_content`).
* The signature is SHA256withRSA (PKCS#1 v1.5) over the content encoded in the message's own
  charset, in standard base64 (:func:`sign`, :func:`verify`).
* A synchronous response is verified over the raw text of its ``*_response`` object, cut out
  of the body as it was received (:func:`split_response`): never re-serialised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "CHARSETS",
    "ResponseParts",
    "SigningError",
    "cert_sn",
    "load_certificates",
    "load_private_key",
    "load_public_key",
    "notification_sign_content",
    "public_pem",
    "request_sign_content",
    "root_cert_sn",
    "sign",
    "split_response",
    "verify",
]

#: The charsets Alipay uses, by the name it gives them, lower-cased, to Python's codec.
CHARSETS: Final = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk"}

#: Signature algorithms of the root certificates that count in ``alipay_root_cert_sn``:
#: sha1WithRSAEncryption and sha256WithRSAEncryption (the official PHP SDK's rule; the Java
#: SDK takes every 1.2.840.113549.1.1.* algorithm, which selects the same two certificates
#: of Alipay's published root chain).
_ROOT_SN_ALGORITHMS: Final = frozenset({"1.2.840.113549.1.1.5", "1.2.840.113549.1.1.11"})
_PEM_BLOCK: Final = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL
)


class SigningError(ValueError):
    """Key material that cannot be used (not a PEM/DER RSA key, not a certificate...)."""


# -- keys ------------------------------------------------------------------------------------
def _der_from_bare_base64(data: bytes) -> bytes | None:
    """Alipay's key tool hands out keys as bare base64 (no PEM armour): accept them."""
    text = b"".join(data.split())
    if not text or b"-----" in text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def load_private_key(data: bytes) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``),
    unencrypted, or from the bare base64 DER Alipay's tool writes."""
    key: object
    try:
        der = _der_from_bare_base64(data)
        if der is not None:
            try:
                key = serialization.load_der_private_key(der, password=None)
            except ValueError:
                key = _rsa_from_pkcs1_der(der)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"not an unencrypted RSA private key in PEM ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningError(f"not an RSA private key but {type(key).__name__}")
    if key.key_size < 2048:
        raise SigningError(f"the RSA key has {key.key_size} bits; RSA2 needs at least 2048")
    return key


def _rsa_from_pkcs1_der(der: bytes) -> object:
    """A PKCS#1 DER private key (bare base64 of ``RSA PRIVATE KEY``)."""
    pem = (
        b"-----BEGIN RSA PRIVATE KEY-----\n"
        + base64.encodebytes(der)
        + b"-----END RSA PRIVATE KEY-----\n"
    )
    return serialization.load_pem_private_key(pem, password=None)


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (``PUBLIC KEY`` or ``RSA PUBLIC KEY``), from a certificate
    (its first one), or from the bare base64 DER Alipay's open platform shows."""
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = load_certificates(data)[0].public_key()
        else:
            der = _der_from_bare_base64(data)
            if der is not None:
                key = serialization.load_der_public_key(der)
            else:
                key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"not an RSA public key in PEM ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningError(f"not an RSA public key but {type(key).__name__}")
    return key


def public_pem(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> bytes:
    """The public half as a ``PUBLIC KEY`` PEM."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- certificates (certificate mode) ---------------------------------------------------------
def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order (Alipay's root file holds several)."""
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise SigningError("no PEM certificate found")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as exc:
        raise SigningError(f"a certificate cannot be read ({exc})") from None


def _sn(certificate: x509.Certificate) -> str:
    # The issuer's distinguished name as Java's X500Principal.getName() writes it (RFC 2253:
    # last RDN first, "CN=...,OU=...,O=...,C=..."), then the serial number in decimal.
    issuer = certificate.issuer.rfc4514_string()
    return hashlib.md5(f"{issuer}{certificate.serial_number}".encode()).hexdigest()


def cert_sn(data: bytes) -> str:
    """``app_cert_sn``: MD5 (hex) of the issuer DN followed by the decimal serial number of
    the file's first certificate."""
    return _sn(load_certificates(data)[0])


def root_cert_sn(data: bytes) -> str:
    """``alipay_root_cert_sn``: the SNs of the root file's certificates signed with
    sha1WithRSA or sha256WithRSA, in file order, joined with ``_``."""
    parts = [
        _sn(c)
        for c in load_certificates(data)
        if c.signature_algorithm_oid.dotted_string in _ROOT_SN_ALGORITHMS
    ]
    if not parts:
        raise SigningError("the root certificate file holds no RSA-signed certificate")
    return "_".join(parts)


# -- what is signed --------------------------------------------------------------------------
def _join(params: Mapping[str, str], skip: frozenset[str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in skip and params[k])


_REQUEST_SKIP: Final = frozenset({"sign"})
_NOTIFICATION_SKIP: Final = frozenset({"sign", "sign_type"})


def request_sign_content(params: Mapping[str, str]) -> str:
    """What a request's ``sign`` covers: every parameter but ``sign`` (``sign_type`` stays),
    non-empty ones only, sorted by key (code point order), ``k=v`` joined with ``&``."""
    return _join(params, _REQUEST_SKIP)


def notification_sign_content(params: Mapping[str, str], *, keep_empty: bool = False) -> str:
    """What a notification's ``sign`` covers: every parameter but ``sign`` and ``sign_type``,
    non-empty ones only (``keep_empty`` keeps them as ``k=``: the official Java SDK's
    ``getSignCheckContentV1`` form), sorted, ``k=v`` joined with ``&``."""
    if keep_empty:
        return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in _NOTIFICATION_SKIP)
    return _join(params, _NOTIFICATION_SKIP)


# -- signing ---------------------------------------------------------------------------------
def sign(content: str, key: rsa.RSAPrivateKey, charset: str = "utf-8") -> str:
    """SHA256withRSA (PKCS#1 v1.5) over ``content`` encoded in ``charset``, base64."""
    signature = key.sign(content.encode(charset), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify(content: str, signature: str, key: rsa.RSAPublicKey, charset: str = "utf-8") -> bool:
    """Whether ``signature`` (base64) is ``key``'s SHA256withRSA signature of ``content``.
    Never raises: a garbled signature or content that the charset cannot encode is False."""
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        key.verify(raw, content.encode(charset), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError, UnicodeError, LookupError):
        return False
    return True


# -- synchronous responses -------------------------------------------------------------------
class ResponseParts:
    """The top-level members of a JSON response, each as the raw text it was received as."""

    __slots__ = ("members",)

    def __init__(self, members: dict[str, str]) -> None:
        self.members = members

    def raw(self, name: str) -> str | None:
        return self.members.get(name)


_WS: Final = " \t\r\n"


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _end_of_string(text: str, i: int) -> int:
    """``text[i]`` is an opening quote: the index just past the closing one."""
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise ValueError("a string is not closed")


def _end_of_value(text: str, i: int) -> int:
    """The index just past the JSON value starting at ``text[i]``: objects and arrays are
    matched bracket by bracket, skipping strings (and the escapes inside them)."""
    if i >= len(text):
        raise ValueError("a value is missing")
    c = text[i]
    if c == '"':
        return _end_of_string(text, i)
    if c in "{[":
        depth = 0
        while i < len(text):
            c = text[i]
            if c == '"':
                i = _end_of_string(text, i)
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise ValueError("an object or array is not closed")
    j = i
    while j < len(text) and text[j] not in ",}]" + _WS:
        j += 1
    if j == i:
        raise ValueError(f"unexpected {c!r}")
    return j


def split_response(text: str) -> ResponseParts:
    """Cut a response body ``{"name": value, ...}`` into its top-level members, each value as
    its raw text: the ``*_response`` object exactly as Alipay signed it, wherever ``sign``
    stands, whatever braces or escaped quotes its strings hold. ``ValueError`` if the body is
    not one JSON object or repeats a member."""
    members: dict[str, str] = {}
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        raise ValueError("the response is not a JSON object")
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "}":
        i = _skip_ws(text, i + 1)
        if i != len(text):
            raise ValueError("text after the response object")
        return ResponseParts(members)
    while True:
        if i >= len(text) or text[i] != '"':
            raise ValueError("a member name is missing")
        end = _end_of_string(text, i)
        name = text[i + 1 : end - 1]
        if "\\" in name:
            raise ValueError("escaped member names are not expected")
        i = _skip_ws(text, end)
        if i >= len(text) or text[i] != ":":
            raise ValueError("':' is missing")
        i = _skip_ws(text, i + 1)
        end = _end_of_value(text, i)
        if name in members:
            raise ValueError(f"the member {name!r} appears twice")
        members[name] = text[i:end]
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "}":
            i = _skip_ws(text, i + 1)
            if i != len(text):
                raise ValueError("text after the response object")
            return ResponseParts(members)
        raise ValueError("',' or '}' is missing")
