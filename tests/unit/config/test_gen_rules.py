"""One rule set for gen, validate and the node: talos-gen config's flags and its secrets bundle.

``talos-gen config`` refuses (exit 2, naming the flag and the value, nothing written) what
``talos-gen validate`` would refuse in the config it writes; a secrets bundle whose certificate
or key fails the config checks is refused with the file, line and key (exit 1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from libtalos import pki
from libtalos.config import GenerateInput, generate, load, validate
from libtalos.errors import UsageError, ValidationError
from libtalos.secrets import b64, load_bundle
from talos_gen.cli import main

DATA = Path(__file__).resolve().parents[2] / "data" / "config"
ENDPOINT = "https://10.5.0.2:6443"
BUNDLE = (DATA / "secrets.yaml").read_text()


def gen(out: Path, *extra: str) -> int:
    return main(["config", "demo", ENDPOINT, "-o", str(out), *extra])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            ["--registry-mirror", "docker.io=notaurl"],
            "error: --registry-mirror 'docker.io=notaurl': 'notaurl' must be an http or https URL",
            id="mirror-not-a-url",
        ),
        pytest.param(
            ["--registry-mirror", "docker.io=ftp://m.example"],
            "error: --registry-mirror 'docker.io=ftp://m.example': 'ftp://m.example' "
            "must be an http or https URL",
            id="mirror-scheme",
        ),
        pytest.param(
            ["--registry-mirror", "docker.io=https://u:secret@m.example:99999"],
            "error: --registry-mirror 'docker.io=https://***@m.example:99999': "
            "'https://***@m.example:99999' must be an http or https URL",
            id="mirror-bad-port-credentials-masked",
        ),
        pytest.param(
            ["--additional-sans", "a,b,,c"],
            "error: --additional-sans '': must not be empty",
            id="sans-empty-entry",
        ),
        pytest.param(
            ["--additional-sans", "a,b,"],
            "error: --additional-sans '': must not be empty",
            id="sans-trailing-comma",
        ),
        pytest.param(
            ["--additional-sans", "ok.example", "--additional-sans", "bad host"],
            "error: --additional-sans 'bad host': must be an IP address or a DNS name",
            id="sans-not-a-name",
        ),
        pytest.param(
            ["--dns-domain", "bad_domain!"],
            "error: --dns-domain 'bad_domain!': must be a valid DNS name",
            id="dns-domain",
        ),
    ],
)
def test_bad_flags_are_usage_errors_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert gen(out, *flags) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == message
    assert "secret" not in err
    assert not out.exists()


def test_good_flags_write_configs_that_validate(tmp_path: Path) -> None:  # negative control
    out = tmp_path / "out"
    flags = ["--registry-mirror", "docker.io=http://172.20.0.1:5000"]
    flags += ["--additional-sans", "a.example, 10.0.0.9", "--dns-domain", "cluster.example"]
    assert gen(out, *flags) == 0
    for kind in ("init", "controlplane", "join"):
        path = out / f"{kind}.yaml"
        cfg = load(path.read_text(), str(path)).config
        assert validate(cfg, "container").errors == [], kind
    text = (out / "controlplane.yaml").read_text()
    assert "- a.example\n" in text and "- 10.0.0.9\n" in text


def test_library_generation_uses_the_same_rules() -> None:
    bundle = load_bundle(BUNDLE, "secrets.yaml")
    with pytest.raises(UsageError, match="registry mirror docker.io: endpoint 'x' must be an"):
        generate(GenerateInput("d", ENDPOINT, registry_mirrors={"docker.io": ["x"]}), bundle)
    with pytest.raises(UsageError, match="additional SAN '': must not be empty"):
        generate(GenerateInput("d", ENDPOINT, additional_sans=["a", ""]), bundle)


def test_a_patch_that_breaks_a_rule_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    patch = '[{"op": "add", "path": "/machine/network/hostname", "value": "bad_host!"}]'
    assert gen(out, "--config-patch", patch) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: init.yaml would not be valid:"
    assert "machine.network.hostname: must be a hostname" in err
    assert not out.exists()


# -- the secrets bundle -------------------------------------------------------------------


def _line_of(text: str, prefix: str, after: str) -> int:
    lines = text.splitlines()
    start = lines.index(after)
    return next(i for i, line in enumerate(lines[start:], start + 1) if line.startswith(prefix))


def _replace(text: str, section: str, key: str, value: str) -> tuple[str, int]:
    line = _line_of(text, f"        {key}: ", f"    {section}:")
    lines = text.splitlines(keepends=True)
    lines[line - 1] = f"        {key}: {value}\n"
    return "".join(lines), line


GARBAGE = b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"


def test_bundle_with_garbage_pem_names_file_line_and_key() -> None:
    text, line = _replace(BUNDLE, "os", "crt", b64(GARBAGE))
    with pytest.raises(ValidationError) as info:
        load_bundle(text, "bundle.yaml")
    assert [p.render() for p in info.value.problems] == [
        f"bundle.yaml:{line} document 1: certs.os.crt: not a PEM certificate "
        "(the CERTIFICATE block is not a valid X.509 certificate)"
    ]


def test_bundle_problems_all_at_once() -> None:
    other = pki.new_ca(algorithm="ed25519")
    leaf = pki.issue(other)
    text, os_key = _replace(BUNDLE, "os", "key", b64(other.key))
    text, etcd_crt = _replace(text, "etcd", "crt", b64(leaf.crt))
    text, sa_key = _replace(text, "k8sserviceaccount", "key", b64(other.key))
    text, k8s_key = _replace(text, "k8s", "key", b64(b"not a key"))
    with pytest.raises(ValidationError) as info:
        load_bundle(text, "bundle.yaml")
    rendered = [p.render() for p in info.value.problems]
    assert rendered == [
        f"bundle.yaml:{etcd_crt} document 1: certs.etcd.crt: "
        "not a CA certificate (BasicConstraints CA is not set)",
        f"bundle.yaml:{etcd_crt + 1} document 1: certs.etcd.key: "
        "does not match certs.etcd.crt (the public keys differ)",
        f"bundle.yaml:{k8s_key} document 1: certs.k8s.key: not a PEM private key",
        f"bundle.yaml:{os_key} document 1: certs.os.key: "
        "does not match certs.os.crt (the public keys differ)",
        f"bundle.yaml:{sa_key} document 1: certs.k8sserviceaccount.key: "
        "unsupported key type: Ed25519 (expected ECDSA or RSA)",
    ]
    joined = "\n".join(rendered)
    assert b64(other.key)[:24] not in joined


def test_good_bundles_load() -> None:  # negative controls: the fixture and both contracts
    load_bundle(BUNDLE, "secrets.yaml")
    for contract in ("", "v0.8"):
        bundle = pki.generate_secrets(contract)
        assert load_bundle(bundle.to_yaml(), "fresh.yaml") == bundle


def test_gen_with_a_bad_bundle_reports_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, line = _replace(BUNDLE, "os", "crt", b64(GARBAGE))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(text)
    out = tmp_path / "out"
    assert gen(out, "--with-secrets", str(secrets)) == 1  # the fast path
    assert gen(out, "--with-secrets", str(secrets), "--dns-domain", "c.local") == 1  # Typer
    err = capsys.readouterr().err.splitlines()
    expected = (
        f"error: {secrets}:{line} document 1: certs.os.crt: not a PEM certificate "
        "(the CERTIFICATE block is not a valid X.509 certificate)"
    )
    assert err == [expected, expected]
    assert not out.exists()
