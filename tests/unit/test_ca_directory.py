"""certifi's bundle as an OpenSSL hashed directory (build_layer.write_ca_directory) and the TLS context
that reads it on demand (teams_connect.adapters.tls): the names are the ones OpenSSL looks up, the
certificates are the bundle's, and a handshake verifies through it (and fails without the issuer)."""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import build_layer
from teams_connect.adapters import tls

OPENSSL = shutil.which("openssl")


def _openssl_hash(der: bytes) -> str:
    assert OPENSSL, "the openssl command is needed to check the subject hashes (.ci/run installs it)"
    result = subprocess.run(  # noqa: S603
        [OPENSSL, "x509", "-inform", "DER", "-noout", "-subject_hash"],
        input=der,
        capture_output=True,
        check=True,
    )
    return result.stdout.decode().strip()


def _certificate(
    subject: x509.Name,
    issuer: x509.Name | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    ca: bool = True,
    dns: str | None = None,
    public: ec.EllipticCurvePublicKey | None = None,
) -> x509.Certificate:
    own = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(public or own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(key or own, hashes.SHA256())


def _name(*rdns: list[x509.NameAttribute[str]]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName(r) for r in rdns])


def test_the_hash_of_every_bundled_certificate_is_openssls() -> None:
    ders = build_layer.pem_certificates(Path(certifi.where()).read_bytes())
    assert len(ders) > 100
    assert [build_layer.subject_hash(d) for d in ders] == [_openssl_hash(d) for d in ders]


@pytest.mark.parametrize(
    "subject",
    [
        _name([x509.NameAttribute(NameOID.COMMON_NAME, "  Upper   CASE\tand  Spaces ")]),
        _name([x509.NameAttribute(NameOID.COMMON_NAME, "Ünïcödé ÀBC", x509.name._ASN1Type.BMPString)]),
        _name([x509.NameAttribute(NameOID.COMMON_NAME, "Univ Ersal", x509.name._ASN1Type.UniversalString)]),
        _name([x509.NameAttribute(NameOID.COMMON_NAME, "T61 Name\xe9", x509.name._ASN1Type.T61String)]),
        _name(
            [x509.NameAttribute(NameOID.COUNTRY_NAME, "US")],
            [  # a multi-valued RDN: DER sorts its members
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zeta Org"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Alpha"),
            ],
            [x509.NameAttribute(NameOID.EMAIL_ADDRESS, "Root@Example.COM")],
            [x509.NameAttribute(NameOID.SERIAL_NUMBER, "ABC-123")],
        ),
        _name(  # canonical values sort in another order than the originals
            [x509.NameAttribute(NameOID.COMMON_NAME, "Bx"), x509.NameAttribute(NameOID.COMMON_NAME, "ax")]
        ),
        _name([x509.NameAttribute(NameOID.STREET_ADDRESS, "Long  " * 40)]),  # long-form lengths
    ],
)
def test_the_hash_canonicalises_names_as_openssl_does(subject: x509.Name) -> None:
    der = _certificate(subject).public_bytes(serialization.Encoding.DER)
    assert build_layer.subject_hash(der) == _openssl_hash(der)


def test_the_directory_holds_the_bundle_under_its_lookup_names(tmp_path: Path) -> None:
    bundle = Path(certifi.where())
    names = build_layer.write_ca_directory(bundle, tmp_path / "ca")
    ders = build_layer.pem_certificates(bundle.read_bytes())
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == sorted(names)
    written = [build_layer.pem_certificates((tmp_path / "ca" / n).read_bytes()) for n in names]
    assert all(len(w) == 1 for w in written)
    assert [w[0] for w in written] == ders
    assert [n.split(".")[0] for n in names] == [build_layer.subject_hash(d) for d in ders]


def test_two_certificates_with_one_subject_get_two_names(tmp_path: Path) -> None:
    subject = _name([x509.NameAttribute(NameOID.COMMON_NAME, "Same Subject")])
    pems = b"".join(_certificate(subject).public_bytes(serialization.Encoding.PEM) for _ in range(2))
    (tmp_path / "bundle.pem").write_bytes(pems)
    names = build_layer.write_ca_directory(tmp_path / "bundle.pem", tmp_path / "ca")
    stem = build_layer.subject_hash(build_layer.pem_certificates(pems)[0])
    assert names == [f"{stem}.0", f"{stem}.1"]


def test_a_bundle_without_certificates_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "bundle.pem").write_text("nothing here\n", encoding="ascii")
    with pytest.raises(SystemExit, match="no certificate"):
        build_layer.write_ca_directory(tmp_path / "bundle.pem", tmp_path / "ca")


def _serve_once(context: ssl.SSLContext) -> tuple[int, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls_connection:
                    tls_connection.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # the client refused the certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize("issuer_in_directory", [True, False])
def test_a_handshake_verifies_through_the_directory(tmp_path: Path, issuer_in_directory: bool) -> None:
    """A server whose chain ends at a test CA: trusted when the directory (certifi's roots plus that
    CA, written by the build) holds it, refused when it holds only certifi's roots."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name([x509.NameAttribute(NameOID.COMMON_NAME, "Teams Connect Test Root")])
    ca = _certificate(ca_name, key=ca_key, public=ca_key.public_key())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(
        _name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        ca_name,
        ca_key,
        ca=False,
        dns="localhost",
        public=leaf_key.public_key(),
    )
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    bundle = Path(certifi.where()).read_bytes()
    if issuer_in_directory:
        bundle += ca.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "bundle.pem").write_bytes(bundle)
    build_layer.write_ca_directory(tmp_path / "bundle.pem", tmp_path / "ca")

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    port, thread = _serve_once(server)
    client = ssl.create_default_context(capath=str(tmp_path / "ca"))
    assert client.cert_store_stats()["x509_ca"] == 0  # nothing read yet: OpenSSL reads on demand
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        if issuer_in_directory:
            with client.wrap_socket(raw, server_hostname="localhost") as connection:
                assert connection.recv(2) == b"ok"
            assert client.cert_store_stats()["x509_ca"] == 1  # the one CA this handshake needed
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
                client.wrap_socket(raw, server_hostname="localhost")
    thread.join(timeout=5)


def test_the_context_reads_the_layers_directory_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_layer.write_ca_directory(Path(certifi.where()), tmp_path / "certifi-capath")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setattr(tls, "CA_DIRECTORY", str(tmp_path / "certifi-capath"))
    tls.context.cache_clear()
    try:
        context = tls.context()
        assert context.cert_store_stats()["x509_ca"] == 0  # nothing parsed at init
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        monkeypatch.setattr(tls, "CA_DIRECTORY", str(tmp_path / "absent"))
        tls.context.cache_clear()
        assert tls.context().cert_store_stats()["x509_ca"] > 100  # httpx's own context: the whole bundle
        monkeypatch.setattr(tls, "CA_DIRECTORY", str(tmp_path / "certifi-capath"))
        monkeypatch.setenv("SSL_CERT_FILE", certifi.where())  # the operator's choice wins, as in httpx
        tls.context.cache_clear()
        assert tls.context().cert_store_stats()["x509_ca"] > 100
    finally:
        tls.context.cache_clear()


def test_the_layer_directory_is_where_the_build_writes_it() -> None:
    layer_python = Path(tls.__file__).resolve().parents[2]
    assert Path(tls.CA_DIRECTORY) == layer_python / build_layer.CA_DIRECTORY
