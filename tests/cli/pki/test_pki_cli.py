"""talos-pki in-process through ``main(argv)``: output shapes, file modes, exit codes, messages."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from libtalos import pki
from libtalos.cli import run
from libtalos.secrets import load_bundle
from talos_pki.app import app
from talos_pki.cli import main


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run main(argv); return (exit code, stdout, stderr)."""

    def _cli(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return _cli


def b64pem(value: str) -> bytes:
    return base64.b64decode(value)


def openssl_verify(
    tmp_path: Path, ca_pem: bytes, cert_pem: bytes
) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed (apt package openssl)")
    (tmp_path / "v-ca.pem").write_bytes(ca_pem)
    (tmp_path / "v-cert.pem").write_bytes(cert_pem)
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "v-ca.pem"), str(tmp_path / "v-cert.pem")],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def ca_file(tmp_path: Path, cli: Any) -> Path:
    path = tmp_path / "ca.yaml"
    code, _, err = cli("ca", "--organization", "etcd", "-o", str(path))
    assert code == 0, err
    return path


def test_version(cli: Any) -> None:
    assert cli("--version") == (0, "talos-pki 0.1.0\n", "")


@pytest.mark.parametrize(
    ("algorithm", "key_type", "label"),
    [
        ("ecdsa", ec.EllipticCurvePublicKey, b"EC PRIVATE KEY"),
        ("ed25519", ed25519.Ed25519PublicKey, b"ED25519 PRIVATE KEY"),
    ],
)
def test_ca_prints_talos_shape(
    cli: Any, tmp_path: Path, algorithm: str, key_type: type, label: bytes
) -> None:
    code, out, err = cli(
        "ca", "--algorithm", algorithm, "--organization", "o", "--common-name", "c", "--ttl", "1y"
    )
    assert code == 0, err
    data = yaml.safe_load(out)
    assert set(data) == {"crt", "key"}
    crt, key = b64pem(data["crt"]), b64pem(data["key"])
    assert key.startswith(b"-----BEGIN " + label + b"-----")
    cert = x509.load_pem_x509_certificate(crt)
    assert isinstance(cert.public_key(), key_type)
    assert cert.subject.rfc4514_string() == "CN=c,O=o"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)
    pki.check_key_matches(crt, key)
    assert openssl_verify(tmp_path, crt, crt).returncode == 0


def test_ca_rsa_is_4096(cli: Any) -> None:
    code, out, err = cli("ca", "--algorithm", "rsa", "--organization", "k8s")
    assert code == 0, err
    key = x509.load_pem_x509_certificate(b64pem(yaml.safe_load(out)["crt"])).public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096


def test_usage_errors_exit_2(cli: Any) -> None:
    code, out, err = cli("ca")
    assert (code, out) == (2, "")
    assert "give --organization or --common-name" in err
    code, _, err = cli("ca", "--organization", "x", "--ttl", "ten years")
    assert code == 2 and "--ttl: 'ten years' is not a duration" in err
    code, _, err = cli("ca", "--algorithm", "dsa", "--organization", "x")
    assert code == 2 and "--algorithm" in err
    code, _, err = cli("secrets", "--talos-version", "v0.7")
    assert code == 2 and "--talos-version: unsupported Talos version 'v0.7'" in err
    code, _, err = cli("issue")
    assert code == 2 and "--ca" in err
    code, _, err = cli("issue", "--ca", "-", "--ip", "10.0.0.300")
    assert code == 2 and "--ip: '10.0.0.300' is not an IP address" in err
    code, _, _ = cli("no-such-command")
    assert code == 2


def test_key_files_are_0600_and_not_overwritten(cli: Any, ca_file: Path, tmp_path: Path) -> None:
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o600
    before = ca_file.read_bytes()
    code, out, err = cli("ca", "--organization", "again", "-o", str(ca_file))
    assert (code, out) == (1, "")
    assert f"error: {ca_file}: file exists" in err and "--force" in err
    assert ca_file.read_bytes() == before
    code, _, err = cli("ca", "--organization", "again", "-o", str(ca_file), "--force")
    assert code == 0, err
    assert ca_file.read_bytes() != before
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o600
    for cmd in (
        ["issue", "--ca", str(ca_file)],
        ["kubeconfig-cert", "--ca", str(ca_file)],
        ["secrets"],
    ):
        target = tmp_path / f"{cmd[0]}.yaml"
        code, out, err = cli(*cmd, "-o", str(target))
        assert (code, out) == (0, ""), err
        assert stat.S_IMODE(target.stat().st_mode) == 0o600, cmd
        code, _, err = cli(*cmd, "-o", str(target))
        assert code == 1 and "file exists" in err, cmd


def test_issue_from_ca_file_chains(cli: Any, ca_file: Path, tmp_path: Path) -> None:
    code, out, err = cli(
        "issue",
        "--ca",
        str(ca_file),
        "--kind",
        "server",
        "--cn",
        "node1",
        "--org",
        "a",
        "--org",
        "b",
        "--dns",
        "node1",
        "--ip",
        "10.5.0.2",
        "--ip",
        "::1",
        "--ttl",
        "48h",
        "--key-algorithm",
        "ed25519",
    )
    assert code == 0, err
    leaf = yaml.safe_load(out)
    crt = b64pem(leaf["crt"])
    cert = x509.load_pem_x509_certificate(crt)
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert cert.subject.rfc4514_string() == "CN=node1,O=b,O=a"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=48)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.5.0.2", "::1"]
    ca_crt = b64pem(yaml.safe_load(ca_file.read_text())["crt"])
    assert openssl_verify(tmp_path, ca_crt, crt).returncode == 0
    leaf_file = tmp_path / "leaf.yaml"
    leaf_file.write_text(out)
    assert cli("verify", "--ca", str(ca_file), str(leaf_file)) == (0, f"{leaf_file}: OK\n", "")


def test_issue_from_stdin_and_bundle(
    cli: Any, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(ca_file.read_text()))
    code, out, err = cli("issue", "--ca", "-", "--cn", "x")
    assert code == 0, err
    bundle_file = tmp_path / "secrets.yaml"
    assert cli("secrets", "-o", str(bundle_file))[0] == 0
    code, _, err = cli("issue", "--ca", str(bundle_file))
    assert code == 2 and "--bundle-ca" in err
    code, out, err = cli("issue", "--ca", str(bundle_file), "--bundle-ca", "os", "--cn", "n")
    assert code == 0, err
    bundle = load_bundle(bundle_file.read_text())
    pki.verify_chain(bundle.talos_ca.crt, b64pem(yaml.safe_load(out)["crt"]))
    code, out, err = cli("kubeconfig-cert", "--ca", str(bundle_file))
    assert code == 0, err
    crt = b64pem(yaml.safe_load(out)["crt"])
    pki.verify_chain(bundle.kubernetes_ca.crt, crt)
    cert = x509.load_pem_x509_certificate(crt)
    assert cert.subject.rfc4514_string() == "CN=admin,O=system:masters"


def test_bad_ca_inputs(cli: Any, ca_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("crt: abc\n  key: [\n")
    code, out, err = cli("issue", "--ca", str(bad))
    assert (code, out) == (1, "")
    assert "malformed YAML" in err and f"{bad}:" in err
    data = yaml.safe_load(ca_file.read_text())
    bad.write_text(f"crt: {data['crt']}\nkey: {data['key']}\nextra: 1\n")
    code, _, err = cli("issue", "--ca", str(bad))
    assert code == 1 and f"{bad}:3" in err and "extra: unknown key" in err
    bad.write_text(f"crt: {data['crt']}\n")
    code, _, err = cli("issue", "--ca", str(bad))
    assert code == 1 and "key: is required" in err
    other = pki.new_ca(organizations=["other"])
    bad.write_text(f"crt: {data['crt']}\nkey: {pki.CertKey(b'', other.key).to_yaml()['key']}\n")
    code, _, err = cli("issue", "--ca", str(bad))
    assert code == 1 and "the certificate and the private key do not match" in err
    for line in other.key.decode().splitlines()[1:-1]:
        assert line not in err  # the key never appears in a message
    code, _, err = cli("issue", "--ca", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml: no such file" in err


def test_fingerprint_fast_path_equals_typer_path(
    cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = pki.generate_secrets()
    cert = tmp_path / "talos-ca.pem"
    cert.write_bytes(bundle.talos_ca.crt)
    other = tmp_path / "etcd-ca.pem"
    other.write_bytes(bundle.etcd_ca.crt)
    expected = pki.spki_fingerprint(bundle.talos_ca.crt)  # cryptography's SPKI encoding

    import sys

    for name in ("typer", "yaml", "cryptography"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    # The fast path: the tool's own main(); nothing heavy may be imported on the way.
    monkeypatch.setattr("builtins.__import__", _no_heavy_imports(__import__))
    fast = cli("fingerprint", str(cert))
    monkeypatch.undo()
    assert fast == (0, expected + "\n", "")

    typer_code = run(app, ["fingerprint", str(cert)], prog="talos-pki")
    typer_out, _ = capsys.readouterr()
    assert (typer_code, typer_out) == (0, expected + "\n")

    assert cli("fingerprint", str(other))[1] != fast[1]  # negative control

    truncated = tmp_path / "truncated.pem"
    truncated.write_bytes(bundle.talos_ca.crt[:100])
    code, out, err = cli("fingerprint", str(truncated))
    assert (code, out) == (1, "") and f"error: {truncated}: truncated PEM" in err
    typer_code = run(app, ["fingerprint", str(truncated)], prog="talos-pki")
    out, typer_err = capsys.readouterr()
    assert (typer_code, out, typer_err) == (1, "", err)


def _no_heavy_imports(real: Any) -> Any:
    def guarded(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".", maxsplit=1)[0] in {"typer", "click", "yaml", "cryptography"}:
            raise AssertionError(f"the fingerprint fast path imported {name}")
        return real(name, *args, **kwargs)

    return guarded


def test_fingerprint_shapes_and_stdin(
    cli: Any, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    crt = b64pem(yaml.safe_load(ca_file.read_text())["crt"])
    expected = pki.spki_fingerprint(crt) + "\n"
    assert cli("fingerprint", str(ca_file))[1] == expected  # {crt, key} YAML
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(crt)))
    assert cli("fingerprint", "-") == (0, expected, "")
    code, _, err = cli("fingerprint", "/nonexistent/x.pem")
    assert code == 1 and "/nonexistent/x.pem: no such file" in err


def test_inspect_and_check_window(cli: Any, ca_file: Path, tmp_path: Path) -> None:
    code, out, err = cli("issue", "--ca", str(ca_file), "--cn", "soon", "--ttl", "10d")
    assert code == 0, err
    leaf = tmp_path / "soon.yaml"
    leaf.write_text(out)
    pem = tmp_path / "soon.pem"
    pem.write_bytes(b64pem(yaml.safe_load(out)["crt"]))
    code, out, err = cli("inspect", str(pem))
    assert code == 0, err
    info = yaml.safe_load(out)
    assert info["subject"] == "CN=soon" and info["issuer"] == "O=etcd"
    assert info["keyAlgorithm"] == "ECDSA P-256" and info["daysLeft"] in (9, 10)
    code, out, err = cli("inspect", str(leaf), "--check", "--within", "30d")
    assert code == 1
    assert "expires within 30d" in err and "crt" in err
    assert yaml.safe_load(out)["crt"]["subject"] == "CN=soon"  # still reported on stdout
    code, _, err = cli("inspect", str(leaf), "--check", "--within", "5d")
    assert code == 0, err
    code, _, err = cli("inspect", str(leaf), "--check", "--within", "soon")
    assert code == 2 and "--within" in err


def test_inspect_finds_certs_in_a_bundle(cli: Any, tmp_path: Path) -> None:
    bundle = tmp_path / "s.yaml"
    assert cli("secrets", "-o", str(bundle))[0] == 0
    code, out, err = cli("inspect", str(bundle))
    assert code == 0, err
    data = yaml.safe_load(out)
    assert set(data) == {
        "certs.etcd.crt",
        "certs.k8s.crt",
        "certs.k8saggregator.crt",
        "certs.os.crt",
    }
    assert data["certs.os.crt"]["keyAlgorithm"] == "Ed25519"
    assert data["certs.k8saggregator.crt"]["subject"] == "CN=front-proxy,O="


def test_secrets_v08_and_stdout(cli: Any) -> None:
    code, out, err = cli("secrets", "--talos-version", "v0.8")
    assert code == 0, err
    bundle = load_bundle(out)
    assert bundle.aggregator_ca is None and bundle.service_account_key is None
    key = x509.load_pem_x509_certificate(bundle.kubernetes_ca.crt).public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096


def test_verify_failures(cli: Any, ca_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    assert cli("ca", "--organization", "etcd", "-o", str(other))[0] == 0
    leaf = tmp_path / "leaf.yaml"
    assert cli("issue", "--ca", str(ca_file), "-o", str(leaf))[0] == 0
    code, out, err = cli("verify", "--ca", str(other), str(leaf))
    assert (code, out) == (1, "")
    assert f"error: {leaf}: not signed by {other} (wrong CA?)" in err
    truncated = tmp_path / "t.pem"
    truncated.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    code, _, err = cli("verify", "--ca", str(ca_file), str(truncated))
    assert code == 1 and "truncated PEM" in err
    code, _, err = cli("verify", "--ca", "-", "-")
    assert code == 2


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    """Make a directory unwritable even for root (ext4 immutable flag), or skip."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed: cannot make a read-only directory")
    probe = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the immutable flag is not supported here: {probe.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_unwritable_output_leaves_nothing(cli: Any, tmp_path: Path) -> None:
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    if os.geteuid() != 0:
        out_dir.chmod(0o500)
        ctx: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    else:
        ctx = immutable(out_dir)
    with ctx:
        code, out, err = cli("secrets", "-o", str(out_dir / "secrets.yaml"))
        assert (code, out) == (1, "")
        assert f"error: {out_dir / 'secrets.yaml'}: cannot write" in err
        assert list(out_dir.iterdir()) == []
    # Replacing a directory fails at rename: the temp file must not be left behind.
    target = tmp_path / "target"
    target.mkdir()
    code, _, err = cli("secrets", "-o", str(target), "--force")
    assert code == 1 and "cannot write" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "target"]


# --------------------------------------------------------------------------- secrets fast path

SECRETS_ARGVS = [
    ["secrets"],
    ["secrets", "-o", "-"],
    ["secrets", "-o", "out.yaml"],
    ["secrets", "--output", "out.yaml", "--force"],
    ["secrets", "--output=out.yaml"],
    ["secrets", "--force", "--talos-version", "v0.8", "-o", "x"],
    ["secrets", "--talos-version=v0.9.3"],
]
NOT_SIMPLE = [
    ["secrets", "--help"],
    ["secrets", "-o"],
    ["secrets", "-o", "a", "-o", "b"],
    ["secrets", "--forc"],
    ["secrets", "-oX"],
    ["secrets", "extra"],
    ["ca"],
]


@pytest.mark.parametrize("argv", SECRETS_ARGVS)
def test_secrets_fast_argv_parsing_equals_click(argv: list[str]) -> None:
    import typer.main

    from libtalos.fastpath import parse
    from talos_pki.cli import FAST_COMMANDS

    group = typer.main.get_command(app)
    command = group.get_command(group.make_context("talos-pki", list(argv)), "secrets")  # type: ignore[attr-defined]
    assert command is not None
    expected = command.make_context("secrets", list(argv[1:])).params
    parsed = parse(FAST_COMMANDS, argv)
    assert parsed is not None and parsed[1] == expected


@pytest.mark.parametrize("argv", NOT_SIMPLE)
def test_secrets_fast_path_leaves_the_rest_to_typer(argv: list[str]) -> None:
    from libtalos.fastpath import parse
    from talos_pki.cli import FAST_COMMANDS

    assert parse(FAST_COMMANDS, argv) is None


def test_secrets_fast_path_imports_no_typer_or_yaml(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "s.yaml"
    real = __import__

    def guarded(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".", maxsplit=1)[0] in {"typer", "click", "yaml"}:
            raise AssertionError(f"the secrets fast path imported {name}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", guarded)
    fast = cli("secrets", "-o", str(target))
    refused = cli("secrets", "-o", str(target))
    bad_version = cli("secrets", "--talos-version", "v0.7")
    monkeypatch.undo()
    assert fast == (0, "", "")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    load_bundle(target.read_text())
    # The Typer path answers the same failures the same way.
    assert refused[0] == 1 and "file exists" in refused[2]
    assert run(app, ["secrets", "-o", str(target)], prog="talos-pki") == 1
    assert bad_version[0] == 2 and "unsupported Talos version 'v0.7'" in bad_version[2]
    assert run(app, ["secrets", "--talos-version", "v0.7"], prog="talos-pki") == 2


def test_plain_emitter_equals_yamlio() -> None:
    from libtalos import yamlio
    from talos_pki import outputs

    for seed in range(40):
        data = pki.generate_secrets(rng=pki.DeterministicRandom(bytes([seed]))).to_yaml_data()
        assert outputs.dump(data) == yamlio.dump(data)
    # Values YAML would read as something else go through PyYAML (which quotes them).
    tricky = ["123456.1234567890123456", "0x12ab", "yes", "NULL", "+12", "1e5", "", "a b", "é"]
    for value in tricky:
        data = {"secrets": {"bootstraptoken": value}}
        assert outputs.dump(data) == yamlio.dump(data), value
        assert yamlio.load_one(outputs.dump(data)).data == data, value


def test_inspect_checks_crt_against_its_key(cli: Any, ca_file: Path, tmp_path: Path) -> None:
    code, out, err = cli("inspect", str(ca_file), "--check")
    assert code == 0, err
    assert yaml.safe_load(out)["crt"]["keyMatches"] is True
    good = yaml.safe_load(ca_file.read_text())
    other = pki.new_ca(organizations=["other"]).to_yaml()
    # A talosconfig-like context: the CA has no key beside it; crt/key are a pair.
    context = tmp_path / "talosconfig"
    context.write_text(
        yaml.safe_dump(
            {
                "context": "a",
                "contexts": {"a": {"ca": good["crt"], "crt": other["crt"], "key": good["key"]}},
            }
        )
    )
    code, out, err = cli("inspect", str(context), "--check")
    assert code == 1
    data = yaml.safe_load(out)
    assert "keyMatches" not in data["contexts.a.ca"]
    assert data["contexts.a.crt"]["keyMatches"] is False
    assert f"{context} contexts.a.crt: the certificate and its key do not match" in err
    for line in pki.CertKey(b"", b64pem(good["key"])).key.decode().splitlines()[1:-1]:
        assert line not in err + out  # the key is never printed


# ------------------------------------------------------------------ bounds of the subject and TTL


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ca", "--organization", "x", "--ttl", "8000y"], "--ttl: 8000y is too long"),
        (["ca", "--organization", "x", "--ttl", "9" * 5000 + "y"], "--ttl: 99999"),
        (["ca", "--organization", "x", "--ttl", "1y" * 9000], "1y1y1y... is too long"),
        (["ca", "--common-name", "c" * 65], "--common-name: 'cccc"),
        (["ca", "--organization", ""], "--organization: '' must be 1 to 64 bytes in UTF-8"),
    ],
)
def test_ca_bounds(cli: Any, argv: list[str], message: str) -> None:
    code, out, err = cli(*argv)
    assert (code, out) == (2, "")
    assert message in err and "internal error" not in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ttl", "8000y"], "--ttl: 8000y is too long: a certificate cannot be valid past"),
        (["--cn", "a" * 100], "must be 1 to 64 bytes in UTF-8 (X.509's limit), not 100"),
        (["--org", "o" * 65], "--org: 'oooo"),
        (["--dns", "a b.example"], "--dns: 'a b.example' is not a valid DNS name"),
        (["--dns", "-x.example"], "--dns: '-x.example' is not a valid DNS name"),
    ],
)
def test_issue_bounds(cli: Any, ca_file: Path, argv: list[str], message: str) -> None:
    code, out, err = cli("issue", "--ca", str(ca_file), *argv)
    assert (code, out) == (2, "")
    assert message in err, err


def test_kubeconfig_cert_ttl_bound(cli: Any, ca_file: Path) -> None:
    code, _out, err = cli("kubeconfig-cert", "--ca", str(ca_file), "--ttl", "8000y")
    assert code == 2 and "--ttl: 8000y is too long" in err, err


def test_bounds_negative_controls(cli: Any, ca_file: Path) -> None:
    """The largest values that fit are issued: 64 bytes, an IDNA name, a long TTL."""
    code, out, err = cli(
        "issue",
        "--ca",
        str(ca_file),
        "--cn",
        "a" * 64,
        "--dns",
        "ü.example",
        "--dns",
        "*.wild.example",
        "--ttl",
        "7000y",
    )
    assert code == 0, err
    cert = x509.load_pem_x509_certificate(b64pem(yaml.safe_load(out)["crt"]))
    assert cert.subject.rfc4514_string() == "CN=" + "a" * 64
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["xn--tda.example", "*.wild.example"]
    # the CA's own notAfter bounds the leaf (pki never outlives its CA)
    assert cert.not_valid_after_utc.year < 9999


def test_inspect_check_reports_an_unreadable_certificate(cli: Any, tmp_path: Path) -> None:
    code, out, _err = cli("secrets")
    assert code == 0
    data = yaml.safe_load(out)
    data["certs"]["etcd"]["crt"] = "not base64!"
    bad = tmp_path / "bundle.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, err = cli("inspect", "--check", str(bad))
    assert code == 1
    assert f"{bad}:" in err and "certs.etcd.crt: not base64 of a PEM certificate" in err, err
    assert "certs.os.crt" in out  # the readable ones are still described
    # without --check it is a warning, and the exit is 0
    code, _out, err = cli("inspect", str(bad))
    assert code == 0 and "warning:" in err and "certs.etcd.crt" in err
    # negative control: the untouched bundle passes --check
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(yaml.safe_load(cli("secrets")[1]), sort_keys=False))
    assert cli("inspect", "--check", str(good))[0] == 0


@pytest.mark.parametrize("command", ["ca", "issue", "kubeconfig-cert"])
def test_ttl_up_to_the_last_x509_time_and_not_a_second_more(
    cli: Any, ca_file: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """The bound and the certificate use one "now": a TTL ending exactly at 9999-12-31T23:59:59Z
    is issued with that notAfter, one second more is a usage error naming --ttl."""
    from talos_pki.common import LAST_NOT_AFTER

    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    module = {"ca": "ca", "issue": "issue", "kubeconfig-cert": "kubeconfig_cert"}[command]
    monkeypatch.setattr(f"talos_pki.commands.{module}.start_clock", lambda: pki.FixedClock(start))
    longest = int((LAST_NOT_AFTER - start).total_seconds())
    args = ["--organization", "x"] if command == "ca" else ["--ca", str(ca_file)]
    if command == "ca":
        args += ["--algorithm", "ed25519"]
    code, out, err = cli(command, *args, "--ttl", f"{longest + 1}s")
    assert (code, out) == (2, ""), err
    assert (
        f"--ttl: {longest + 1}s is too long: a certificate cannot be valid past 9999-12-31" in err
    )
    code, out, err = cli(command, *args, "--ttl", f"{longest}s")
    assert code == 0, err
    cert = x509.load_pem_x509_certificate(b64pem(yaml.safe_load(out)["crt"]))
    assert cert.not_valid_before_utc == start
    if command == "ca":
        assert cert.not_valid_after_utc == LAST_NOT_AFTER
    else:  # a leaf ends with its CA (issued now, for 10 years)
        assert cert.not_valid_after_utc < LAST_NOT_AFTER


def test_within_is_bounded_like_ttl(cli: Any, ca_file: Path) -> None:
    code, out, err = cli("inspect", str(ca_file), "--check", "--within", "8000y")
    assert (code, out) == (2, ""), err
    assert "--within: 8000y is too long" in err
    code, _out, err = cli("inspect", str(ca_file), "--check", "--within", "7000y")
    assert code == 1 and "expires within 7000y" in err  # a valid window, and the CA is in it


@pytest.mark.parametrize(
    ("dns", "message"),
    [
        ("", "--dns: '' is not a valid DNS name"),
        ("ü..example", "--dns: 'ü..example' is not a valid DNS name"),
        ("a" * 64 + ".example", "is not a valid DNS name"),
        ("x_y.example", "--dns: 'x_y.example' is not a valid DNS name"),
    ],
)
def test_issue_refuses_bad_dns_names(cli: Any, ca_file: Path, dns: str, message: str) -> None:
    code, out, err = cli("issue", "--ca", str(ca_file), "--dns", dns)
    assert (code, out) == (2, "")
    assert message in err and "internal error" not in err, err


def test_ca_common_name_bound_counts_utf8_bytes(cli: Any) -> None:
    """64 bytes of UTF-8 is the bound (what cryptography enforces on a CN): 32 two-byte
    characters fit, 33 do not; undecodable command-line bytes are refused by name."""
    code, out, err = cli("ca", "--common-name", "ü" * 33)
    assert (code, out) == (2, "")
    assert "--common-name: " in err and "must be 1 to 64 bytes in UTF-8" in err and "not 66" in err
    assert "internal error" not in err
    code, out, err = cli("ca", "--organization", "o", "--common-name", "x\udcff")
    assert (code, out) == (2, "") and "--common-name: 'x\\udcff' is not valid UTF-8" in err, err
    code, out, err = cli("ca", "--organization", "o\x85")
    assert (code, out) == (2, "") and "--organization: " in err and "control character" in err
    code, out, err = cli("ca", "--algorithm", "ed25519", "--common-name", "ü" * 32)
    assert code == 0, err
    cert = x509.load_pem_x509_certificate(b64pem(yaml.safe_load(out)["crt"]))
    assert cert.subject.rfc4514_string() == "CN=" + "ü" * 32
