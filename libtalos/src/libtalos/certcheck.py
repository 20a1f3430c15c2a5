"""Certificates and private keys checked without ``cryptography``: PEM, DER, key match, CA flag.

A machine config is validated by ``talos-gen validate``, by the node when a config arrives
through the API, and by the node at boot; the node is PID 1, which never imports
``cryptography`` (:mod:`talos_init.api.issuer`). So the checks a config's certificates and
keys must pass before a node takes it are done here in pure Python, once, for every caller:

- a certificate is a ``CERTIFICATE`` PEM block holding a well-formed DER X.509 certificate
  (the structure, the subject public key, the extensions, no duplicate extension);
- a private key is a ``PRIVATE KEY``, ``ED25519 PRIVATE KEY``, ``EC PRIVATE KEY`` or
  ``RSA PRIVATE KEY`` block holding PKCS#8, SEC 1 or PKCS#1 DER, internally consistent;
- key types are the ones :mod:`libtalos.pki` signs with: Ed25519, ECDSA on P-256, P-384 or
  P-521, RSA;
- a key matches a certificate when the public key derived from the private key (Ed25519 and
  ECDSA by scalar multiplication, RSA from the modulus and exponent) equals the certificate's;
- a CA certificate has BasicConstraints with CA set (what :class:`libtalos.pki.LoadedCA` needs).

Every error is a :class:`~libtalos.errors.PKIError` whose message says what is wrong without
quoting the material. The arithmetic is not constant-time: it reads keys that are already
stored in the config being checked, and signs nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from libtalos.errors import PKIError

__all__ = [
    "CA_UNSET",
    "KEY_LABELS",
    "SERVICE_ACCOUNT_KEYS",
    "CertFacts",
    "KeyFacts",
    "PemBlock",
    "key_problem",
    "pair_problems",
    "pem_blocks",
    "read_certificate",
    "read_private_key",
]

KEY_LABELS = frozenset({"PRIVATE KEY", "ED25519 PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"})
SUPPORTED = "expected Ed25519, ECDSA P-256, P-384 or P-521, or RSA"
CA_UNSET = "not a CA certificate (BasicConstraints CA is not set)"
# kube-apiserver signs service account tokens with ECDSA or RSA keys only.
SERVICE_ACCOUNT_KEYS = ("ecdsa", "rsa")

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END ([A-Z0-9 ]+)-----", re.S)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


class PemBlock:
    """One PEM block: its label and its DER bytes."""

    __slots__ = ("der", "label")

    def __init__(self, label: str, der: bytes) -> None:
        self.label = label
        self.der = der

    def __repr__(self) -> str:  # the DER may be a private key: never shown
        return f"PemBlock(label={self.label!r}, der=<{len(self.der)} bytes>)"


def pem_blocks(data: bytes, what: str) -> list[PemBlock]:
    """Every PEM block in ``data``; truncated or garbled blocks are errors naming ``what``."""
    blocks: list[PemBlock] = []
    begins = len(_PEM_BEGIN.findall(data))
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        end_label = match.group(3).decode("ascii")
        if label != end_label:
            raise PKIError(f"{what}: PEM block {label} ends with END {end_label} (truncated?)")
        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            raise PKIError(f"{what}: garbled PEM: the {label} block is not valid base64") from None
        blocks.append(PemBlock(label, der))
    if begins > len(blocks):
        raise PKIError(f"{what}: truncated PEM: a BEGIN line has no matching END line")
    if not blocks:
        raise PKIError(f"{what}: no PEM block found")
    return blocks


# --------------------------------------------------------------------------- DER


class _BadDerError(Exception):
    """Malformed DER (internal: mapped to a message naming the block)."""


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """The tag, content and end of the DER element at ``pos`` (definite, minimal lengths)."""
    if pos + 2 > len(data):
        raise _BadDerError
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _BadDerError  # high tag numbers: nothing read here uses them
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data) or data[pos] == 0:
            raise _BadDerError  # indefinite, absurd or non-minimal length
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80:
            raise _BadDerError
        pos += count
    end = pos + length
    if end > len(data):
        raise _BadDerError
    return tag, data[pos:end], end


def _items(content: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(content):
        tag, value, pos = _tlv(content, pos)
        out.append((tag, value))
    return out


def _one(data: bytes, tag: int) -> bytes:
    """The content of ``data``, which must be exactly one element with ``tag``."""
    got, value, end = _tlv(data, 0)
    if got != tag or end != len(data):
        raise _BadDerError
    return value


def _expect(item: tuple[int, bytes], tag: int) -> bytes:
    if item[0] != tag:
        raise _BadDerError
    return item[1]


def _int(content: bytes) -> int:
    if not content or (len(content) > 1 and content[:2] in (b"\x00\x00", b"\xff\xff")):
        raise _BadDerError
    if len(content) > 1 and (content[0] == 0 and content[1] < 0x80):
        raise _BadDerError  # non-minimal
    return int.from_bytes(content, "big", signed=True)


def _bits(content: bytes) -> bytes:
    if not content or content[0] != 0:
        raise _BadDerError  # keys are whole bytes
    return content[1:]


_SEQ, _INT, _BITS, _OCTETS, _OID, _BOOL, _NULL = 0x30, 0x02, 0x03, 0x04, 0x06, 0x01, 0x05


# --------------------------------------------------------------------------- curves

_ED25519 = bytes.fromhex("2b6570")
_RSA = bytes.fromhex("2a864886f70d010101")
_EC = bytes.fromhex("2a8648ce3d0201")
_BASIC_CONSTRAINTS = bytes.fromhex("551d13")
_OTHER_KEYS = {
    bytes.fromhex("2a8648ce380401"): "DSA",
    bytes.fromhex("2b656e"): "X25519",
    bytes.fromhex("2b656f"): "X448",
    bytes.fromhex("2b6571"): "Ed448",
    bytes.fromhex("2a864886f70d010303"): "RSA-PSS",  # restricted RSA: not what pki signs with
}


class _Curve:
    __slots__ = ("b", "g", "n", "name", "p", "size")

    def __init__(self, name: str, p: str, b: str, g: str, n: str) -> None:
        self.name = name
        self.p = int(p, 16)
        self.b = int(b, 16)
        self.n = int(n, 16)
        self.size = (self.p.bit_length() + 7) // 8
        half = len(g) // 2
        self.g = (int(g[:half], 16), int(g[half:], 16))


# NIST curves (a = -3), from `openssl ecparam -param_enc explicit`.
_CURVES = {
    bytes.fromhex("2a8648ce3d030107"): _Curve(
        "P-256",
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
        "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
    ),
    bytes.fromhex("2b81040022"): _Curve(
        "P-384",
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe"
        "ffffffff0000000000000000ffffffff",
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a"
        "c656398d8a2ed19d2a85c8edd3ec2aef",
        "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38"
        "5502f25dbf55296c3a545e3872760ab7"
        "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0"
        "0a60b1ce1d7e819d7a431d7c90ea0e5f",
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
        "581a0db248b0a77aecec196accc52973",
    ),
    bytes.fromhex("2b81040023"): _Curve(
        "P-521",
        "01ff" + "ff" * 64,
        "0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef1"
        "09e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00",
        "00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d"
        "3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66"
        "011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e"
        "662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650",
        "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "fa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
    ),
}

_Point = tuple[int, int] | None  # affine; None is the point at infinity


def _jacobian_double(p: int, x: int, y: int, z: int) -> tuple[int, int, int]:
    """2P in Jacobian coordinates on a curve with a = -3 ("dbl-2001-b")."""
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    return x3, (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p, z3


def _ec_mul(c: _Curve, k: int) -> _Point:
    """``k`` times the generator: double-and-add in Jacobian coordinates, adding the affine
    generator (mixed addition, "madd-2007-bl"), one inversion at the end."""
    p = c.p
    gx, gy = c.g
    x, y, z = 1, 1, 0  # z = 0: the point at infinity
    for bit in bin(k)[2:]:
        if z:
            x, y, z = _jacobian_double(p, x, y, z)
        if bit != "1":
            continue
        if not z:
            x, y, z = gx, gy, 1
            continue
        zz = z * z % p
        h = (gx * zz - x) % p
        r = 2 * (gy * z * zz - y) % p
        if not h:  # the point is +G (double it) or -G (the sum is infinity)
            x, y, z = _jacobian_double(p, gx, gy, 1) if not r else (1, 1, 0)
            continue
        hh = h * h % p
        i = 4 * hh % p
        j = h * i % p
        v = x * i % p
        x3 = (r * r - j - 2 * v) % p
        y = (r * (v - x3) - 2 * y * j) % p
        z = ((z + h) * (z + h) - zz - hh) % p
        x = x3
    if not z:
        return None
    zi = pow(z, -1, p)
    zi2 = zi * zi % p
    return x * zi2 % p, y * zi2 * zi % p


def _ec_point(c: _Curve, data: bytes) -> tuple[int, int]:
    """An encoded point (uncompressed or compressed) on ``c``."""
    size, p = c.size, c.p
    if len(data) == 1 + 2 * size and data[0] == 4:
        x, y = int.from_bytes(data[1 : 1 + size], "big"), int.from_bytes(data[1 + size :], "big")
    elif len(data) == 1 + size and data[0] in (2, 3):
        x = int.from_bytes(data[1:], "big")
        y = pow((x * x * x - 3 * x + c.b) % p, (p + 1) // 4, p)  # p = 3 (mod 4) on all three
        if y & 1 != data[0] & 1:
            y = p - y
    else:
        raise _BadDerError
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + c.b)) % p:
        raise _BadDerError  # not on the curve
    return x, y


# Ed25519 (RFC 8032 §5.1), extended coordinates.
_ED_P = 2**255 - 19
_ED_D = -121665 * pow(121666, -1, _ED_P) % _ED_P
_ED_Y = 4 * pow(5, -1, _ED_P) % _ED_P
_ED_X = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_ED_G = (_ED_X, _ED_Y, 1, _ED_X * _ED_Y % _ED_P)

_EdPoint = tuple[int, int, int, int]


def _ed_add(a: _EdPoint, b: _EdPoint) -> _EdPoint:
    p = _ED_P
    ea = (a[1] - a[0]) * (b[1] - b[0]) % p
    eb = (a[1] + a[0]) * (b[1] + b[0]) % p
    ec = 2 * a[3] * b[3] * _ED_D % p
    ed = 2 * a[2] * b[2] % p
    e, f, g, h = eb - ea, ed - ec, ed + ec, eb + ea
    return e * f % p, g * h % p, f * g % p, e * h % p


def _ed25519_public(seed: bytes) -> bytes:
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar = (scalar & ((1 << 254) - 8)) | (1 << 254)
    result: _EdPoint = (0, 1, 1, 0)
    addend = _ED_G
    while scalar:
        if scalar & 1:
            result = _ed_add(result, addend)
        addend = _ed_add(addend, addend)
        scalar >>= 1
    inverse = pow(result[2], -1, _ED_P)
    x, y = result[0] * inverse % _ED_P, result[1] * inverse % _ED_P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


# --------------------------------------------------------------------------- facts


class CertFacts:
    """What the checks need from a certificate: its key type, public key and CA flag."""

    __slots__ = ("algorithm", "is_ca", "public")

    def __init__(self, algorithm: str, public: tuple[object, ...], is_ca: bool) -> None:
        self.algorithm = algorithm  # "ed25519", "ecdsa P-256", "rsa", or the unsupported type
        self.public = public  # comparable with KeyFacts.public; () when the type is unsupported
        self.is_ca = is_ca


class KeyFacts:
    """A private key's type and its public key (the private part is not kept)."""

    __slots__ = ("algorithm", "public")

    def __init__(self, algorithm: str, public: tuple[object, ...]) -> None:
        self.algorithm = algorithm
        self.public = public

    def __repr__(self) -> str:
        return f"KeyFacts(algorithm={self.algorithm!r})"


def _spki(content: bytes) -> tuple[str, tuple[object, ...]]:
    """The key type and public key of a SubjectPublicKeyInfo (its content)."""
    items = _items(content)
    if len(items) != 2:
        raise _BadDerError
    alg = _items(_expect(items[0], _SEQ))
    key = _bits(_expect(items[1], _BITS))
    if not alg or len(alg) > 2:
        raise _BadDerError
    oid = _expect(alg[0], _OID)
    if oid == _ED25519:
        if len(alg) != 1 or len(key) != 32:
            raise _BadDerError
        return "ed25519", ("ed25519", key)
    if oid == _RSA:
        n, e = (_int(_expect(i, _INT)) for i in _two(_items(_one(key, _SEQ))))
        if n <= 0 or e <= 0:
            raise _BadDerError
        return "rsa", ("rsa", n, e)
    if oid == _EC:
        if len(alg) != 2 or alg[1][0] != _OID:
            return "ECDSA with explicit curve parameters", ()
        curve = _CURVES.get(alg[1][1])
        if curve is None:
            return "ECDSA on an unsupported curve", ()
        return f"ecdsa {curve.name}", ("ecdsa", curve.name, *_ec_point(curve, key))
    return _OTHER_KEYS.get(oid, "an unknown key type"), ()


def _two(items: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    if len(items) != 2:
        raise _BadDerError
    return items


def _certificate(der: bytes) -> CertFacts:
    outer = _items(_one(der, _SEQ))
    if len(outer) != 3:
        raise _BadDerError
    _expect(outer[1], _SEQ)  # signature algorithm
    _expect(outer[2], _BITS)  # signature
    tbs = _items(_expect(outer[0], _SEQ))
    i = 0
    version = 0
    if tbs and tbs[0][0] == 0xA0:
        version = _int(_one(tbs[0][1], _INT))
        i = 1
    if version not in (0, 1, 2) or len(tbs) < i + 6:
        raise _BadDerError
    _int(_expect(tbs[i], _INT))  # serial
    _expect(tbs[i + 1], _SEQ)  # signature algorithm
    _items(_expect(tbs[i + 2], _SEQ))  # issuer
    validity = _items(_expect(tbs[i + 3], _SEQ))
    if len(validity) != 2 or any(tag not in (0x17, 0x18) for tag, _ in validity):
        raise _BadDerError
    _items(_expect(tbs[i + 4], _SEQ))  # subject
    algorithm, public = _spki(_expect(tbs[i + 5], _SEQ))
    is_ca = False
    seen: set[bytes] = set()
    for tag, value in tbs[i + 6 :]:
        if tag in (0x81, 0x82):  # issuer and subject unique IDs
            continue
        if tag != 0xA3:
            raise _BadDerError
        for ext in _items(_one(value, _SEQ)):
            fields = _items(_expect(ext, _SEQ))
            if len(fields) not in (2, 3):
                raise _BadDerError
            oid = _expect(fields[0], _OID)
            if oid in seen:
                raise _BadDerError  # a duplicate extension makes the certificate unusable
            seen.add(oid)
            if len(fields) == 3:
                _expect(fields[1], _BOOL)
            inner = _expect(fields[-1], _OCTETS)
            if oid == _BASIC_CONSTRAINTS:
                constraints = _items(_one(inner, _SEQ))
                if constraints and constraints[0][0] == _BOOL:
                    is_ca = constraints[0][1] not in (b"", b"\x00")
    return CertFacts(algorithm, public, is_ca)


def read_certificate(pem: bytes) -> CertFacts:
    """The first certificate of ``pem``; :class:`PKIError` ("not a PEM certificate ...")."""
    try:
        blocks = pem_blocks(pem, "")
    except PKIError as exc:
        raise PKIError(_reason("not a PEM certificate", exc)) from None
    block = next((b for b in blocks if b.label == "CERTIFICATE"), None)
    if block is None:
        labels = ", ".join(sorted({b.label for b in blocks}))
        raise PKIError(f"not a PEM certificate (found {labels} instead of CERTIFICATE)")
    try:
        return _certificate(block.der)
    except (_BadDerError, ValueError):
        raise PKIError(
            "not a PEM certificate (the CERTIFICATE block is not a valid X.509 certificate)"
        ) from None


def _reason(head: str, exc: PKIError) -> str:
    detail = exc.message.removeprefix(": ")
    return head if detail == "no PEM block found" else f"{head} ({detail})"


def _rsa_private(content: bytes) -> KeyFacts:
    items = [_int(_expect(item, _INT)) for item in _items(content)]
    if len(items) != 9 or items[0] != 0:
        raise _BadDerError  # two-prime keys only (version 0)
    _, n, e, d, p, q, dp, dq, qinv = items
    if min(n, e, d, p, q) <= 1 or p * q != n:
        raise _BadDerError
    lam = (p - 1) * (q - 1) // _gcd(p - 1, q - 1)
    if d * e % lam != 1 or dp != d % (p - 1) or dq != d % (q - 1) or qinv * q % p != 1:
        raise _BadDerError
    return KeyFacts("rsa", ("rsa", n, e))


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _ec_private(content: bytes, curve_oid: bytes | None) -> KeyFacts:
    items = _items(content)
    if len(items) < 2 or _int(_expect(items[0], _INT)) != 1:
        raise _BadDerError
    secret = _expect(items[1], _OCTETS)
    embedded = None
    for tag, value in items[2:]:
        if tag == 0xA0:
            oid = _one(value, _OID)
            if curve_oid is not None and oid != curve_oid:
                raise _BadDerError
            curve_oid = oid
        elif tag == 0xA1:
            embedded = _bits(_one(value, _BITS))
        else:
            raise _BadDerError
    if curve_oid is None:
        raise _BadDerError
    curve = _CURVES.get(curve_oid)
    if curve is None:
        return KeyFacts("ECDSA on an unsupported curve", ())
    d = int.from_bytes(secret, "big")
    if not 1 <= d < curve.n:
        raise _BadDerError
    point = _ec_mul(curve, d)
    if point is None or (embedded is not None and _ec_point(curve, embedded) != point):
        raise _BadDerError  # the stored public key is not this private key's
    return KeyFacts(f"ecdsa {curve.name}", ("ecdsa", curve.name, *point))


def _pkcs8(items: list[tuple[int, bytes]]) -> KeyFacts:
    if _int(_expect(items[0], _INT)) not in (0, 1) or len(items) < 3:
        raise _BadDerError
    alg = _items(_expect(items[1], _SEQ))
    private = _expect(items[2], _OCTETS)
    embedded = next((_bits(v) for t, v in items[3:] if t == 0x81), None)
    if not alg:
        raise _BadDerError
    oid = _expect(alg[0], _OID)
    if oid == _ED25519:
        seed = _one(private, _OCTETS)
        if len(seed) != 32 or len(alg) != 1:
            raise _BadDerError
        public = _ed25519_public(seed)
        if embedded is not None and embedded != public:
            raise _BadDerError
        return KeyFacts("ed25519", ("ed25519", public))
    if oid == _RSA:
        return _rsa_private(_one(private, _SEQ))
    if oid == _EC:
        if len(alg) != 2 or alg[1][0] != _OID:
            return KeyFacts("ECDSA with explicit curve parameters", ())
        return _ec_private(_one(private, _SEQ), alg[1][1])
    return KeyFacts(_OTHER_KEYS.get(oid, "an unknown key type"), ())


_DERIVED: dict[bytes, KeyFacts] = {}  # SHA-256 of a key's DER -> its facts (public part only)
_DERIVED_MAX = 64


def _private_key(der: bytes) -> KeyFacts:
    """The facts of a key, derived once per process: a bundle's CA keys are checked when the
    bundle loads and again in each config generated from it."""
    digest = hashlib.sha256(der).digest()
    facts = _DERIVED.get(digest)
    if facts is None:
        facts = _derive(der)
        if len(_DERIVED) < _DERIVED_MAX:
            _DERIVED[digest] = facts
    return facts


def _derive(der: bytes) -> KeyFacts:
    items = _items(_one(der, _SEQ))
    if len(items) < 2 or items[0][0] != _INT:
        raise _BadDerError
    if items[1][0] == _SEQ:
        return _pkcs8(items)
    if items[1][0] == _OCTETS:
        return _ec_private(_one(der, _SEQ), None)
    if items[1][0] == _INT:
        return _rsa_private(_one(der, _SEQ))
    raise _BadDerError


def read_private_key(pem: bytes) -> KeyFacts:
    """The first private key of ``pem``; :class:`PKIError` ("not a PEM private key ...")."""
    try:
        blocks = pem_blocks(pem, "")
    except PKIError as exc:
        raise PKIError(_reason("not a PEM private key", exc)) from None
    if any(b.label == "ENCRYPTED PRIVATE KEY" for b in blocks):
        raise PKIError("encrypted private keys are not supported")
    block = next((b for b in blocks if b.label in KEY_LABELS), None)
    if block is None:
        labels = ", ".join(sorted({b.label for b in blocks}))
        raise PKIError(f"not a PEM private key (found {labels} instead of PRIVATE KEY)")
    try:
        return _private_key(block.der)
    except (_BadDerError, ValueError):
        raise PKIError(
            f"not a PEM private key (the {block.label} block is not a valid private key)"
        ) from None


def _unsupported(algorithm: str) -> str:
    return f"unsupported key type: {algorithm} ({SUPPORTED})"


def _display(algorithm: str) -> str:
    kind, _, curve = algorithm.partition(" ")
    name = {"ed25519": "Ed25519", "ecdsa": "ECDSA", "rsa": "RSA"}.get(kind, kind)
    return f"{name} {curve}" if curve else name


def key_problem(key_pem: bytes, allowed: tuple[str, ...] = ()) -> str | None:
    """What is wrong with a lone private key; ``allowed`` limits the types (``"ecdsa"``,
    ``"ed25519"``, ``"rsa"``) further than the supported ones. None when it is fine."""
    try:
        key = read_private_key(key_pem)
    except PKIError as exc:
        return exc.message
    if not key.public:
        return _unsupported(key.algorithm)
    if allowed and key.algorithm.partition(" ")[0] not in allowed:
        expected = " or ".join(_display(a) for a in allowed)
        return f"unsupported key type: {_display(key.algorithm)} (expected {expected})"
    return None


def pair_problems(
    crt_pem: bytes | None, key_pem: bytes | None, *, ca: bool, crt_name: str
) -> list[tuple[str, str]]:
    """Problems of a certificate and its private key, as ``("crt"|"key", message)`` pairs.

    ``None`` skips that half (the caller reports it missing, or allows it); ``ca`` requires
    the CA flag; ``crt_name`` names the certificate in the "does not match" message.
    """
    out: list[tuple[str, str]] = []
    cert = key = None
    if crt_pem is not None:
        try:
            cert = read_certificate(crt_pem)
        except PKIError as exc:
            out.append(("crt", exc.message))
        else:
            if not cert.public:
                out.append(("crt", _unsupported(cert.algorithm)))
                cert = None
            elif ca and not cert.is_ca:
                out.append(("crt", CA_UNSET))
    if key_pem is not None:
        try:
            key = read_private_key(key_pem)
        except PKIError as exc:
            out.append(("key", exc.message))
        else:
            if not key.public:
                out.append(("key", _unsupported(key.algorithm)))
                key = None
    if cert is not None and key is not None and cert.public != key.public:
        out.append(("key", f"does not match {crt_name} (the public keys differ)"))
    return out
