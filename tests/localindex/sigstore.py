"""A local Sigstore, and PyPI's side of PEP 740 attestations.

`LocalSigstore` is one WSGI app serving, over the local index's HTTPS and throwaway CA:

- Fulcio `POST /api/v2/signingCert`: verifies the Bearer identity token (a GitHub JWT for
  audience `sigstore`) against the local GitHub issuer, checks the CSR's proof of possession,
  and issues a short-lived code-signing certificate chained to a local root, carrying the
  GitHub claims in Fulcio's extensions and an embedded SCT signed by a local CT log key.
- Rekor v1 under `<prefix>/rekor/api/v1/`: `POST log/entries` (dsse and hashedrekord 0.0.1),
  `GET log`, `GET log/entries/<uuid>`, `GET log/entries?logIndex=N`, `GET log/publicKey`;
  an RFC 6962 Merkle tree, inclusion proofs, signed checkpoints and signed entry timestamps.
- A client trust config (`trust_config_path`) that `sigstore.models.ClientTrustConfig.from_json`
  loads: a trusted root (the Fulcio root, the CT log key, the Rekor key) and a signing config
  naming this Fulcio and this Rekor (v1 only, no timestamp authority).

Mounting: sigstore-python joins Fulcio's absolute path onto the CA URL (`urljoin(url,
"/api/v2/signingCert")`), dropping any path the URL has, so Fulcio is requested at
`/api/v2/signingCert` on the host root whatever the signing config says. The app routes on
SCRIPT_NAME + PATH_INFO, so a host serves it by sending it every path under `MOUNTS`.
The local index does (`LocalIndex.sigstore`): the HTTPS, the log, scripted faults and
latency are the index's, under its names "fulcio" and "rekor". A request still waiting
when the instance is reset ends with the index transport's `Dropped`, unanswered.

PyPI's side: `verify_upload()` does what warehouse does with an upload's `attestations` field
(same checks, same order, same words), against this instance's trusted root; `Provenances`
keeps what the Integrity API answers.

Tests read `certificates_issued`, `entries` and `max_in_flight`, move `clock`, slow Rekor
with `rekor_delay`, and call `reset()` (the index's reset calls it) between tests.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

import jwt
import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.localindex import oidc, transport

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

__all__ = [
    "MOUNTS",
    "PREFIX",
    "AttestationRefused",
    "LocalSigstore",
    "Provenances",
    "verify_upload",
]

AUDIENCE = "sigstore"
PREFIX = "/_sigstore"
FULCIO_PATH = "/api/v2/signingCert"
MOUNTS = (PREFIX, "/api/v2/")
"""Path prefixes a host must route to `LocalSigstore.app`."""

TRUST_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
PUBLISH_V1 = "https://docs.pypi.org/attestations/publish/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
_SUPPORTED_PREDICATES = (PUBLISH_V1, SLSA_PROVENANCE_V1)

_SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

Service = Literal["fulcio", "rekor", "other"]


def _oid(n: int) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{n}")


class AttestationRefused(Exception):
    """PyPI's 400 for an upload's attestations; `str()` is the reason phrase PyPI sends."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"Invalid attestations supplied during upload: {why}")


# --- keys, DER and the trust config -----------------------------------------------------


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(_spki(key)).digest()


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _iso(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class _MerkleTree:
    """RFC 6962's Merkle tree over leaf hashes; callers hold the lock."""

    def __init__(self) -> None:
        self.leaves: list[bytes] = []
        self._cache: dict[tuple[int, int], bytes] = {}

    @staticmethod
    def leaf_hash(data: bytes) -> bytes:
        return hashlib.sha256(b"\x00" + data).digest()

    def root(self, start: int = 0, end: int | None = None) -> bytes:
        end = len(self.leaves) if end is None else end
        if end == start:
            return hashlib.sha256(b"").digest()
        if end - start == 1:
            return self.leaves[start]
        # A range's hash depends on its leaves only, and leaves never change: cache it.
        cached = self._cache.get((start, end))
        if cached is None:
            split = start + _largest_power_of_two_below(end - start)
            left, right = self.root(start, split), self.root(split, end)
            cached = self._cache[(start, end)] = hashlib.sha256(b"\x01" + left + right).digest()
        return cached

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 6962 section 2.1.1, lowest level first."""

        def path(m: int, start: int, end: int) -> list[bytes]:
            if end - start == 1:
                return []
            split = _largest_power_of_two_below(end - start)
            if m < split:
                return [*path(m, start, start + split), self.root(start + split, end)]
            return [*path(m - split, start + split, end), self.root(start, start + split)]

        return path(index, 0, size)


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


@dataclass(frozen=True)
class _Entry:
    uuid: str
    index: int
    body: bytes
    integrated_time: int


# --- the app -------------------------------------------------------------------------


class LocalSigstore:
    """Fulcio, a CT log and Rekor v1 for one base URL; see the module docstring."""

    cert_lifetime: float
    """Seconds a signing certificate is valid for: 10 minutes, as Fulcio's."""
    rekor_delay: float
    """Seconds Rekor takes to answer each new entry (concurrent entries overlap)."""

    def __init__(self, base_url: str, issuer: oidc.Issuer, *, prefix: str = PREFIX) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix.rstrip("/")
        self._issuer = issuer
        self._tmp = Path(tempfile.mkdtemp(prefix="localsigstore-"))
        now = datetime.datetime.now(datetime.UTC)
        self._epoch = now - datetime.timedelta(days=1)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ct_key = ec.generate_private_key(ec.SECP256R1())
        self._rekor_key = ec.generate_private_key(ec.SECP256R1())
        self._tree_id = secrets.randbelow(1 << 62) + 1
        self.ca_cert = self._make_root(now)
        self.rekor_log_id = _key_id(self._rekor_key.public_key())
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self.provenances = Provenances()
        self._restore()
        self.trust_config_path = self._tmp / "trust_config.json"
        self.trust_config_path.write_text(json.dumps(self.trust_config(), indent=1))

    # The state tests read and reset.

    def _restore(self) -> None:
        self.cert_lifetime = 600.0
        self.clock: Callable[[], float] = time.time
        """Fulcio's and Rekor's time (validity, SCTs, integrated times); tests may move it."""
        self.rekor_delay = 0.0
        self.certificates_issued = 0
        self.max_in_flight = 0
        """The most Rekor entries being handled at once, since the last reset."""
        self._in_flight = 0
        self._tree = _MerkleTree()
        self._entries: dict[str, _Entry] = {}
        self.provenances.clear()

    def reset(self) -> None:
        """Back to a fresh instance (same keys and trust config); waiting requests are dropped."""
        with self._lock:
            self._cancelled.set()
            self._cancelled = threading.Event()
            self._restore()

    def close(self) -> None:
        self._cancelled.set()
        import shutil

        shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def entries(self) -> int:
        """Entries in the Rekor log."""
        with self._lock:
            return len(self._tree.leaves)

    @property
    def fulcio_url(self) -> str:
        return f"{self.base_url}{self.prefix}/fulcio"

    @property
    def rekor_url(self) -> str:
        return f"{self.base_url}{self.prefix}/rekor"

    # The trust root.

    def _make_root(self, now: datetime.datetime) -> x509.Certificate:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "localsigstore.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "localsigstore"),
            ]
        )
        public = self._ca_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._epoch)
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
            )
            .sign(self._ca_key, hashes.SHA256())
        )

    def trust_config_at(self, base_url: str) -> Path:
        """A client trust config naming this instance at `base_url` (a name the index's proxy
        takes to it), written once; the keys and certificates are the same."""
        path = self._tmp / f"trust_config-{urlsplit(base_url).netloc}.json"
        if not path.exists():
            path.write_text(json.dumps(self.trust_config(base_url.rstrip("/")), indent=1))
        return path

    def trust_config(self, base_url: str | None = None) -> dict[str, Any]:
        """The client trust config: a trusted root and a signing config for this instance,
        at `base_url` (its own by default)."""
        base = base_url or self.base_url
        fulcio_url, rekor_url = f"{base}{self.prefix}/fulcio", f"{base}{self.prefix}/rekor"
        start = {"start": _iso(self._epoch)}

        def key(public: ec.EllipticCurvePublicKey) -> dict[str, Any]:
            return {
                "rawBytes": _b64(_spki(public)),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": start,
            }

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": start,
                "operator": "localsigstore.test",
            }

        trusted_root = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                {
                    "baseUrl": rekor_url,
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": key(self._rekor_key.public_key()),
                    "logId": {"keyId": _b64(self.rekor_log_id)},
                }
            ],
            "certificateAuthorities": [
                {
                    "subject": {
                        "organization": "localsigstore.test",
                        "commonName": "localsigstore",
                    },
                    "uri": fulcio_url,
                    "certChain": {
                        "certificates": [
                            {
                                "rawBytes": _b64(
                                    self.ca_cert.public_bytes(serialization.Encoding.DER)
                                )
                            }
                        ]
                    },
                    "validFor": start,
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": f"{base}{self.prefix}/ct",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": key(self._ct_key.public_key()),
                    "logId": {"keyId": _b64(_key_id(self._ct_key.public_key()))},
                }
            ],
            "timestampAuthorities": [],
        }
        signing_config = {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service(fulcio_url)],
            "oidcUrls": [],
            "rekorTlogUrls": [service(rekor_url)],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaUrls": [],
            "tsaConfig": {"selector": "ANY"},
        }
        return {
            "mediaType": TRUST_CONFIG_MEDIA_TYPE,
            "trustedRoot": trusted_root,
            "signingConfig": signing_config,
        }

    # WSGI.

    def app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI app: routes on SCRIPT_NAME + PATH_INFO, so it works mounted or not."""
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        rekor = f"{self.prefix}/rekor/api/v1/"
        service: Service
        if path in (FULCIO_PATH, f"{self.prefix}/fulcio{FULCIO_PATH}"):
            service = "fulcio"
        elif path.startswith(rekor):
            service = "rekor"
        else:
            service = "other"
        with self._lock:
            cancelled = self._cancelled
        exchange = _Exchange(environ, start_response, method, cancelled)
        # transport.Dropped (this instance reset while a request waited) propagates: the
        # host closes the connection without an answer.
        if service == "other":
            return exchange.json(404, {"code": 404, "message": f"no route for {path}"})
        if service == "fulcio":
            if method != "POST":
                return exchange.json(405, {"code": 12, "message": "Method Not Allowed"})
            return self._fulcio(exchange)
        return self._rekor(exchange, path.removeprefix(rekor))

    # Fulcio.

    def _fulcio(self, ex: _Exchange) -> list[bytes]:
        body = ex.read_body()
        authorization = ex.environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise jwt.InvalidTokenError("no bearer token")
            claims = self._issuer.verify(token, AUDIENCE)
        except jwt.PyJWTError:
            return ex.json(
                401, {"code": 16, "message": "There was an error processing the identity token"}
            )
        try:
            request = json.loads(body)
            pem = base64.b64decode(request["certificateSigningRequest"], validate=True)
            csr = x509.load_pem_x509_csr(pem)
        except (ValueError, KeyError, TypeError):
            return ex.json(
                400, {"code": 3, "message": "There was an error processing the certificate request"}
            )
        # Fulcio's proof of possession for a CSR: its signature, by the key it certifies.
        if not csr.is_signature_valid:
            return ex.json(
                400,
                {
                    "code": 3,
                    "message": "The signature supplied in the request could not be verified",
                },
            )
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            return ex.json(400, {"code": 3, "message": "The public key supplied is not supported"})
        leaf = self._issue(public, claims)
        with self._lock:
            if ex.cancelled is self._cancelled:
                self.certificates_issued += 1
        chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, self.ca_cert)]
        return ex.json(201, {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}})

    def _issue(
        self, public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, claims: Mapping[str, Any]
    ) -> x509.Certificate:
        now = datetime.datetime.fromtimestamp(int(self.clock()), datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(seconds=self.cert_lifetime))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(
                            f"https://github.com/{claims['job_workflow_ref']}"
                        )
                    ]
                ),
                critical=True,
            )
        )
        for oid, value in _fulcio_extensions(claims):
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        # The SCT covers the certificate without the SCT list: sign a precertificate's TBS.
        placeholder = builder.add_extension(
            x509.UnrecognizedExtension(_SCT_LIST_OID, _der(0x04, b"\x00\x00")), critical=False
        ).sign(self._ca_key, hashes.SHA256())
        sct = self._sct(placeholder.tbs_precertificate_bytes)
        # SignedCertificateTimestampList: a u16-length list of u16-length SCTs, in an OCTET STRING.
        leaf = builder.add_extension(
            x509.UnrecognizedExtension(
                _SCT_LIST_OID, _der(0x04, _tls_vector(_tls_vector(sct, 2), 2))
            ),
            critical=False,
        ).sign(self._ca_key, hashes.SHA256())
        assert leaf.tbs_precertificate_bytes == placeholder.tbs_precertificate_bytes
        return leaf

    def _sct(self, tbs: bytes) -> bytes:
        """One v1 SCT for a precertificate entry (RFC 6962 section 3.2), TLS-encoded."""
        timestamp = int(self.clock() * 1000)
        issuer_key_hash = _key_id(self._ca_key.public_key())
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp, 1) + issuer_key_hash + _u24(tbs) + b"\x00\x00"
        )
        signature = self._ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (
            b"\x00"
            + _key_id(self._ct_key.public_key())
            + struct.pack("!Q", timestamp)
            + b"\x00\x00"  # no extensions
            + b"\x04\x03"  # sha256, ecdsa
            + _tls_vector(signature, 2)
        )

    # Rekor.

    def _rekor(self, ex: _Exchange, route: str) -> list[bytes]:
        if ex.method == "POST" and route == "log/entries":
            return self._create_entry(ex)
        if ex.method == "GET" and route == "log":
            with self._lock:
                size = len(self._tree.leaves)
                info = {
                    "rootHash": self._tree.root().hex(),
                    "treeSize": size,
                    "signedTreeHead": self._checkpoint(size, self._tree.root()),
                    "treeID": str(self._tree_id),
                    "inactiveShards": [],
                }
            return ex.json(200, info)
        if ex.method == "GET" and route == "log/publicKey":
            pem = self._rekor_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return ex.respond(200, pem, "application/x-pem-file")
        if ex.method == "GET" and route.startswith("log/entries"):
            query = parse_qs(ex.environ.get("QUERY_STRING", ""))
            with self._lock:
                if route == "log/entries" and "logIndex" in query:
                    index = int(query["logIndex"][0])
                    found = next((e for e in self._entries.values() if e.index == index), None)
                else:
                    found = self._entries.get(route.removeprefix("log/entries/")[-64:])
                if found is None:
                    return ex.json(404, {"code": 404, "message": "entry not found"})
                answer = self._answer(found, len(self._tree.leaves))
            return ex.json(200, answer)
        return ex.json(404, {"code": 404, "message": f"no route for {route}"})

    def _create_entry(self, ex: _Exchange) -> list[bytes]:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            try:
                body = _canonical_body(json.loads(ex.read_body()))
            except (ValueError, KeyError, TypeError, InvalidSignature) as error:
                return ex.json(400, {"code": 400, "message": f"invalid entry: {error}"})
            ex.wait(self.rekor_delay)
            leaf = _MerkleTree.leaf_hash(body)
            now = int(self.clock())  # outside the lock: a test's clock may read the state
            with self._lock:
                if ex.cancelled is not self._cancelled:
                    raise transport.Dropped
                if leaf.hex() in self._entries:
                    return ex.json(
                        409, {"code": 409, "message": "an equivalent entry already exists"}
                    )
                entry = _Entry(leaf.hex(), len(self._tree.leaves), body, now)
                self._tree.leaves.append(leaf)
                self._entries[entry.uuid] = entry
                answer = self._answer(entry, len(self._tree.leaves))
            location = f"{self.rekor_url}/api/v1/log/entries/{self._uuid(entry)}"
            return ex.json(201, answer, headers=(("Location", location),))
        finally:
            with self._lock:
                self._in_flight -= 1

    def _uuid(self, entry: _Entry) -> str:
        return f"{self._tree_id:016x}{entry.uuid}"

    def _answer(self, entry: _Entry, size: int) -> dict[str, Any]:
        """An entry as Rekor v1 answers it; the lock is held."""
        root = self._tree.root(0, size)
        log_id = self.rekor_log_id.hex()
        body = _b64(entry.body)
        promise = rfc8785.dumps(
            {
                "body": body,
                "integratedTime": entry.integrated_time,
                "logID": log_id,
                "logIndex": entry.index,
            }
        )
        return {
            self._uuid(entry): {
                "body": body,
                "integratedTime": entry.integrated_time,
                "logID": log_id,
                "logIndex": entry.index,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": self._checkpoint(size, root),
                        "hashes": [h.hex() for h in self._tree.inclusion_proof(entry.index, size)],
                        "logIndex": entry.index,
                        "rootHash": root.hex(),
                        "treeSize": size,
                    },
                    "signedEntryTimestamp": _b64(
                        self._rekor_key.sign(promise, ec.ECDSA(hashes.SHA256()))
                    ),
                },
            }
        }

    def _checkpoint(self, size: int, root: bytes) -> str:
        """A signed note (transparency-dev's checkpoint format), as Rekor v1 signs them."""
        origin = f"localsigstore.test - {self._tree_id}"
        note = f"{origin}\n{size}\n{_b64(root)}\nTimestamp: {time.time_ns()}\n"
        signature = self._rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        return f"{note}\n\u2014 localsigstore.test {_b64(self.rekor_log_id[:4] + signature)}\n"


def _u24(data: bytes) -> bytes:
    return len(data).to_bytes(3, "big") + data


def _tls_vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def _fulcio_extensions(
    claims: Mapping[str, Any],
) -> Iterator[tuple[x509.ObjectIdentifier, bytes]]:
    """Fulcio's extensions for a GitHub Actions token (fulcio docs/oid-info.md).

    1.1-1.6 are the deprecated ones, their values raw strings; 1.8-1.22 are DER UTF8Strings.
    """
    server = "https://github.com"

    def claim(name: str) -> str | None:
        value = claims.get(name)
        return None if value is None else str(value)

    legacy = {
        1: claim("iss"),
        2: claim("event_name"),
        3: claim("sha"),
        4: claim("workflow"),
        5: claim("repository"),
        6: claim("ref"),
    }
    for n, value in legacy.items():
        if value is not None:
            yield _oid(n), value.encode()
    run = f"{server}/{claims.get('repository')}/actions/runs/{claims.get('run_id')}"
    v2 = {
        8: claim("iss"),
        9: f"{server}/{claims['job_workflow_ref']}",
        10: claim("job_workflow_sha"),
        11: claim("runner_environment"),
        12: f"{server}/{claims['repository']}",
        13: claim("sha"),
        14: claim("ref"),
        15: claim("repository_id"),
        16: f"{server}/{claims['repository_owner']}",
        17: claim("repository_owner_id"),
        18: f"{server}/{claims['workflow_ref']}" if claims.get("workflow_ref") else None,
        19: claim("workflow_sha"),
        20: claim("event_name"),
        21: f"{run}/attempts/{claims.get('run_attempt')}" if claims.get("run_id") else None,
        22: claim("repository_visibility"),
    }
    for n, value in v2.items():
        if value is not None:
            yield _oid(n), _der(0x0C, value.encode())


def _canonical_body(proposed: Mapping[str, Any]) -> bytes:
    """Rekor's canonicalised body for a proposed dsse or hashedrekord 0.0.1 entry.

    As Rekor does, it checks the signatures first (raising InvalidSignature or ValueError).
    """
    kind, version, spec = proposed["kind"], proposed["apiVersion"], proposed["spec"]
    if (kind, version) == ("dsse", "0.0.1"):
        content = spec["proposedContent"]
        envelope_text: str = content["envelope"]
        envelope = json.loads(envelope_text)
        payload = base64.b64decode(envelope["payload"])
        payload_type: str = envelope["payloadType"]
        pae = b" ".join(
            [
                b"DSSEv1",
                str(len(payload_type)).encode(),
                payload_type.encode(),
                str(len(payload)).encode(),
                payload,
            ]
        )
        verifiers = [
            x509.load_pem_x509_certificate(base64.b64decode(v)) for v in content["verifiers"]
        ]
        signatures = []
        for signature in envelope["signatures"]:
            raw = base64.b64decode(signature["sig"])
            verifier = _verify_any(verifiers, raw, pae)
            signatures.append({"signature": _b64(raw), "verifier": content["verifiers"][verifier]})
        canonical: dict[str, Any] = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(envelope_text.encode()).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": signatures,
            },
        }
    elif (kind, version) == ("hashedrekord", "0.0.1"):
        signature = base64.b64decode(spec["signature"]["content"])
        key_pem = base64.b64decode(spec["signature"]["publicKey"]["content"])
        digest = bytes.fromhex(spec["data"]["hash"]["value"])
        if spec["data"]["hash"]["algorithm"] != "sha256":
            raise ValueError("only sha256 digests are supported here")
        public = x509.load_pem_x509_certificate(key_pem).public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ValueError("only ECDSA keys are supported here")
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        canonical = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                "signature": {
                    "content": _b64(signature),
                    "publicKey": {"content": spec["signature"]["publicKey"]["content"]},
                },
            },
        }
    else:
        raise ValueError(f"unsupported entry kind {kind} {version}")
    return rfc8785.dumps(canonical)


def _verify_any(certificates: Sequence[x509.Certificate], signature: bytes, data: bytes) -> int:
    for number, certificate in enumerate(certificates):
        public = certificate.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            continue
        try:
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return number
    raise InvalidSignature("no verifier matches the envelope's signature")


class _Exchange:
    """One request: its body and its answer (the host logs it)."""

    def __init__(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        method: str,
        cancelled: threading.Event,
    ) -> None:
        self.environ = environ
        self._start_response = start_response
        self.method = method
        self.cancelled = cancelled
        self._body: bytes | None = None

    def read_body(self) -> bytes:
        if self._body is None:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
            stream: IO[bytes] = self.environ["wsgi.input"]
            self._body = stream.read(length) if length else b""
        return self._body

    def respond(
        self,
        code: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> list[bytes]:
        self.read_body()
        status = f"{code} {transport.phrase(code)}"
        self._start_response(
            status,
            [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers],
        )
        return [body]

    def json(
        self, code: int, payload: object, headers: Iterable[tuple[str, str]] = ()
    ) -> list[bytes]:
        return self.respond(code, json.dumps(payload).encode(), "application/json", headers)

    def wait(self, seconds: float) -> None:
        if seconds > 0 and self.cancelled.wait(seconds):
            raise transport.Dropped


# --- PyPI's side: verifying an upload's attestations, and the Integrity API -----------------


def verify_upload(
    attestations: str | bytes | Sequence[object],
    *,
    filename: str,
    sha256: str,
    publisher: oidc.Publisher | None,
    trust_config: Path,
) -> list[dict[str, Any]]:
    """What warehouse does with an upload's `attestations` form field.

    `attestations` is the field's JSON text (or the parsed list); `publisher` is the trusted
    publisher the upload token was minted for (None for an API token). Returns the
    attestations as JSON objects to record, or raises `AttestationRefused`, whose text is
    PyPI's 400 reason. Verification uses the trusted root in `trust_config`, where PyPI uses
    Sigstore's production root: the checks are pypi-attestations' `Attestation.verify`.
    """
    from pydantic import TypeAdapter, ValidationError
    from pypi_attestations import Attestation, Distribution, GitHubPublisher
    from pypi_attestations import VerificationError as AttestationVerificationError

    if publisher is None:
        raise AttestationRefused("Attestations are only supported when using Trusted Publishing")
    adapter = TypeAdapter(list[Attestation])
    try:
        if isinstance(attestations, str | bytes):
            parsed = adapter.validate_json(attestations)
        else:
            parsed = adapter.validate_python(list(attestations))
    except ValidationError as error:
        raise AttestationRefused(f"Malformed attestations: {error}") from None
    if not parsed:
        raise AttestationRefused(
            "Malformed attestations: an empty attestation set is not permitted"
        )
    if len(parsed) > len(_SUPPORTED_PREDICATES):
        raise AttestationRefused(
            f"A maximum of {len(_SUPPORTED_PREDICATES)} attestations per file are supported"
        )
    identity = GitHubPublisher(
        repository=f"{publisher.owner}/{publisher.repository}",
        workflow=publisher.workflow,
        environment=publisher.environment or None,
    )
    distribution = Distribution(name=filename, digest=sha256)
    seen: set[str] = set()
    for attestation in parsed:
        try:
            predicate_type = _verify(attestation, identity, distribution, trust_config)
        except AttestationVerificationError as error:
            raise AttestationRefused(
                f"Could not verify the uploaded artifact using the included attestation: {error}"
            ) from None
        except Exception as error:  # warehouse words any other failure so
            raise AttestationRefused(
                f"Unknown error while trying to verify included attestations: {error}"
            ) from None
        if predicate_type not in _SUPPORTED_PREDICATES:
            raise AttestationRefused(
                f"Attestation with unsupported predicate type: {predicate_type}"
            )
        if predicate_type in seen:
            raise AttestationRefused(
                "Multiple attestations for the same file with the same predicate type "
                f"({predicate_type}) are not supported"
            )
        seen.add(predicate_type)
    return [a.model_dump(mode="json") for a in parsed]


def _verify(attestation: Any, identity: Any, distribution: Any, trust_config: Path) -> str:
    """`Attestation.verify(identity, dist)`, against a given trusted root instead of production.

    pypi-attestations 0.0.31 takes no trusted root: it builds `Verifier.production()`. This is
    its body with `Verifier(trusted_root=...)`; the checks and their words are its own.
    """
    from pydantic import ValidationError
    from pypi_attestations import AttestationType
    from pypi_attestations import VerificationError as AttestationVerificationError
    from pypi_attestations._impl import _check_dist_filename
    from sigstore.dsse import _Statement
    from sigstore.errors import VerificationError as SigstoreVerificationError
    from sigstore.models import ClientTrustConfig
    from sigstore.verify import Verifier

    config = ClientTrustConfig.from_json(trust_config.read_text(encoding="utf-8"))
    verifier = Verifier(trusted_root=config.trusted_root)
    bundle = attestation.to_bundle()
    try:
        payload_type, payload = verifier.verify_dsse(bundle, identity._as_policy())
    except SigstoreVerificationError as error:
        raise AttestationVerificationError(str(error)) from error
    if payload_type != "application/vnd.in-toto+json":
        raise AttestationVerificationError(f"expected JSON envelope, got {payload_type}")
    try:
        statement = _Statement.model_validate_json(payload)
    except ValidationError as error:
        raise AttestationVerificationError(f"invalid statement: {error}") from None
    if len(statement.subjects) != 1:
        raise AttestationVerificationError("too many subjects in statement (must be exactly one)")
    subject = statement.subjects[0]
    if not subject.name:
        raise AttestationVerificationError("invalid subject: missing name")
    try:
        parsed_subject = _check_dist_filename(subject.name)
    except ValueError as error:
        raise AttestationVerificationError(f"invalid subject: {error}") from None
    if parsed_subject != _check_dist_filename(distribution.name):
        raise AttestationVerificationError(
            f"subject does not match distribution name: {subject.name} != {distribution.name}"
        )
    if subject.digest.root.get("sha256") != distribution.digest:
        raise AttestationVerificationError("subject does not match distribution digest")
    try:
        AttestationType(statement.predicate_type)
    except ValueError:
        raise AttestationVerificationError(
            f"unknown attestation type: {statement.predicate_type}"
        ) from None
    return str(statement.predicate_type)


class Provenances:
    """The Integrity API's store.

    What `GET /integrity/<project>/<version>/<file>/provenance` answers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_file: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        with self._lock:
            self._by_file.clear()

    def record(
        self, filename: str, publisher: oidc.Publisher, attestations: Sequence[Mapping[str, Any]]
    ) -> None:
        """Keeps a file's verified attestations with the publisher they were verified against."""
        bundle = {
            "publisher": {
                "kind": "GitHub",
                "repository": f"{publisher.owner}/{publisher.repository}",
                "workflow": publisher.workflow,
                "environment": publisher.environment or None,
            },
            "attestations": [dict(a) for a in attestations],
        }
        with self._lock:
            self._by_file[filename] = {"version": 1, "attestation_bundles": [bundle]}

    def has(self, filename: str) -> bool:
        with self._lock:
            return filename in self._by_file

    def provenance(self, filename: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._by_file.get(filename)
            return None if found is None else json.loads(json.dumps(found))

    def answer(self, filename: str) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of the Integrity API's answer for `filename`."""
        found = self.provenance(filename)
        if found is None:
            return 404, {"message": f"No provenance available for {filename}"}
        return 200, found
