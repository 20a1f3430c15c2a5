"""talos-gen config / validate / patch, in-process through main(argv)."""

from __future__ import annotations

import base64
import os
import stat
import subprocess

import pytest
import yaml

from libtalos import config as cfgmod
from libtalos import pki, talosconfig
from libtalos.secrets import load_bundle
from talos_gen.cli import main

ENDPOINT = "https://10.5.0.2:6443"
FILES = ["init.yaml", "controlplane.yaml", "join.yaml", "talosconfig"]


@pytest.fixture(scope="module")
def bundle_text() -> str:
    return pki.generate_secrets().to_yaml()


@pytest.fixture
def secrets_file(tmp_path, bundle_text):
    path = tmp_path / "secrets.yaml"
    path.write_text(bundle_text)
    return path


def gen(tmp_path, secrets_file, *extra: str) -> int:
    return main(
        [
            "config",
            "demo",
            ENDPOINT,
            "--with-secrets",
            str(secrets_file),
            "-o",
            str(tmp_path / "out"),
            *extra,
        ]
    )


def test_writes_four_files_0600_and_reports_them(tmp_path, secrets_file, capsys):
    assert gen(tmp_path, secrets_file) == 0
    out, err = capsys.readouterr()
    assert out == ""  # nothing but data on stdout, and there is none here
    assert [line.split("/")[-1] for line in err.splitlines()] == FILES
    assert all(line.startswith("created ") for line in err.splitlines())
    for name in FILES:
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o600


def test_configs_follow_talos_shapes(tmp_path, secrets_file):
    assert gen(tmp_path, secrets_file, "--additional-sans", "lb.example.org,10.0.0.9") == 0
    out = tmp_path / "out"
    init = yaml.safe_load((out / "init.yaml").read_text())
    cp = yaml.safe_load((out / "controlplane.yaml").read_text())
    join = yaml.safe_load((out / "join.yaml").read_text())
    assert init["machine"]["type"] == "init"
    assert cp["machine"]["type"] == "controlplane"
    assert join["machine"]["type"] == "worker"
    assert init["cluster"]["apiServer"]["certSANs"] == ["10.5.0.2", "lb.example.org", "10.0.0.9"]
    assert "ca" not in join["machine"]  # workers get no machine CA
    assert join["cluster"]["ca"]["key"] == ""  # and only the Kubernetes CA certificate
    assert "clusterName" not in join["cluster"]
    bundle = load_bundle((secrets_file).read_text())
    assert base64.b64decode(init["machine"]["ca"]["crt"]) == bundle.talos_ca.crt
    assert base64.b64decode(join["cluster"]["ca"]["crt"]) == bundle.kubernetes_ca.crt
    for name in ("init.yaml", "controlplane.yaml", "join.yaml"):
        loaded = cfgmod.load((out / name).read_text(), name)
        result = cfgmod.validate(loaded.config, "container")
        assert result.errors == []


def test_talosconfig_client_cert_chains_to_talos_ca(tmp_path, secrets_file, openssl):
    assert gen(tmp_path, secrets_file) == 0
    tc = talosconfig.load(tmp_path / "out" / "talosconfig")
    assert tc.context == "demo"
    ctx = tc.contexts["demo"]
    assert ctx.endpoints == ["127.0.0.1"]
    (tmp_path / "ca.pem").write_bytes(base64.b64decode(ctx.ca))
    (tmp_path / "crt.pem").write_bytes(base64.b64decode(ctx.crt))
    ok = subprocess.run(
        [openssl, "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "crt.pem")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    # negative control: the same check against another CA fails
    other = pki.generate_secrets().talos_ca.crt
    (tmp_path / "other.pem").write_bytes(other)
    bad = subprocess.run(
        [openssl, "verify", "-CAfile", str(tmp_path / "other.pem"), str(tmp_path / "crt.pem")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    pki.check_key_matches(base64.b64decode(ctx.crt), base64.b64decode(ctx.key))


def test_stdout_stream(tmp_path, secrets_file, capsys):
    assert main(["config", "demo", ENDPOINT, "--with-secrets", str(secrets_file), "-o", "-"]) == 0
    out, _ = capsys.readouterr()
    docs = list(yaml.safe_load_all(out))
    assert [d.get("machine", {}).get("type") for d in docs] == [
        "init",
        "controlplane",
        "worker",
        None,
    ]
    assert docs[3]["context"] == "demo"
    assert not (tmp_path / "init.yaml").exists()


def test_refuses_to_overwrite_and_writes_nothing(tmp_path, secrets_file, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "join.yaml").write_text("keep me\n")
    assert gen(tmp_path, secrets_file) == 1
    err = capsys.readouterr().err
    assert "join.yaml: file exists" in err and "--force" in err
    assert sorted(os.listdir(out)) == ["join.yaml"]  # nothing else written
    assert (out / "join.yaml").read_text() == "keep me\n"
    assert gen(tmp_path, secrets_file, "--force") == 0
    assert sorted(os.listdir(out)) == sorted(FILES)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("10.5.0.2:6443", "https"),
        ("http://10.5.0.2:6443", "https"),
        ("https://:6443", "host"),
        ("https://fd00::1:6443", "bracket"),
        ("https://10.5.0.2:99999", "port"),
        ("https://10.5.0.2:http", "port"),
    ],
)
def test_bad_endpoint_is_usage_error_with_hint(tmp_path, endpoint, message, capsys):
    assert main(["config", "demo", endpoint, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err.lower()
    assert "try: https://host:6443" in err
    assert os.listdir(tmp_path) == []


def test_ipv6_endpoint_in_brackets_is_accepted(tmp_path, secrets_file):
    assert (
        main(
            [
                "config",
                "demo",
                "https://[fd00::2]:6443",
                "--with-secrets",
                str(secrets_file),
                "-o",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    cp = yaml.safe_load((tmp_path / "o" / "controlplane.yaml").read_text())
    assert cp["cluster"]["apiServer"]["certSANs"] == ["fd00::2"]


def test_bad_secrets_bundle(tmp_path, bundle_text, capsys):
    data = yaml.safe_load(bundle_text)
    crt = base64.b64decode(data["certs"]["os"]["crt"])
    data["certs"]["os"]["crt"] = base64.b64encode(crt[: len(crt) // 2]).decode()  # truncated PEM
    bad = tmp_path / "truncated.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert (
        main(["config", "demo", ENDPOINT, "--with-secrets", str(bad), "-o", str(tmp_path / "o")])
        == 1
    )
    err = capsys.readouterr().err
    assert "error:" in err
    assert not (tmp_path / "o").exists()
    data = yaml.safe_load(bundle_text)
    data["certs"]["os"]["key"] = data["certs"]["k8s"]["key"]  # key of another CA
    mismatch = tmp_path / "mismatch.yaml"
    mismatch.write_text(yaml.safe_dump(data))
    assert (
        main(
            ["config", "demo", ENDPOINT, "--with-secrets", str(mismatch), "-o", str(tmp_path / "o")]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "match" in err
    assert not (tmp_path / "o").exists()
    secret_key = data["certs"]["k8s"]["key"]
    assert secret_key not in err
    data["certs"]["extra"] = {"crt": ""}
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump(data))
    assert (
        main(
            ["config", "demo", ENDPOINT, "--with-secrets", str(unknown), "-o", str(tmp_path / "o")]
        )
        == 1
    )
    assert "certs.extra: unknown key" in capsys.readouterr().err


def test_patches(tmp_path, secrets_file, capsys):
    patch_file = tmp_path / "w.yaml"
    patch_file.write_text("machine:\n    install:\n        disk: /dev/vdb\n")
    rc = gen(
        tmp_path,
        secrets_file,
        "--config-patch",
        '[{"op": "replace", "path": "/machine/install/disk", "value": "/dev/vda"}]',
        "--config-patch-worker",
        f"@{patch_file}",
        "--config-patch-control-plane",
        '{"machine": {"certSANs": ["cp.example.org"]}}',
    )
    assert rc == 0
    out = tmp_path / "out"
    cp = yaml.safe_load((out / "controlplane.yaml").read_text())
    join = yaml.safe_load((out / "join.yaml").read_text())
    assert cp["machine"]["install"]["disk"] == "/dev/vda"
    assert cp["machine"]["certSANs"] == ["cp.example.org"]
    assert join["machine"]["install"]["disk"] == "/dev/vdb"
    assert "certSANs" not in join["machine"]
    capsys.readouterr()
    rc = gen(tmp_path, secrets_file, "--force", "--config-patch", '{"machine": {"bogus": 1}}')
    assert rc == 1
    assert "machine.bogus: unknown key" in capsys.readouterr().err


def test_validate_success_and_modes(tmp_path, secrets_file, capsys):
    assert gen(tmp_path, secrets_file) == 0
    path = str(tmp_path / "out" / "controlplane.yaml")
    capsys.readouterr()
    assert main(["validate", "--mode", "container", path]) == 0
    assert capsys.readouterr().out == f"{path} is valid for container mode\n"
    assert main(["validate", "-m", "cloud", "-c", path]) == 0
    # metal needs the install disk to exist on the validating machine (as Talos checks it)
    rc = main(["validate", "--mode", "metal", path])
    assert rc == (0 if os.path.exists("/dev/sda") else 1)
    assert main(["validate", "--mode", "moon", path]) == 2


BAD_CONFIGS = [
    ("version: v1alpha1\nmachine: [\n", "malformed YAML"),
    ("version: v1alpha1\nmachine:\n    type: init\n    tipe: x\ncluster: {}\n", ":4"),
    ("version: v1alpha1\nmachine:\n    type: [init]\n", "machine.type"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_CONFIGS)
def test_validate_bad_input_names_line_and_key(tmp_path, text, needle, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["validate", "--mode", "container", str(f)]) == 1
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_validate_bad_cidr_named(tmp_path, secrets_file, capsys):
    assert gen(tmp_path, secrets_file) == 0
    data = yaml.safe_load((tmp_path / "out" / "controlplane.yaml").read_text())
    data["machine"]["network"] = {"interfaces": [{"interface": "eth0", "cidr": "10.5.0.300/24"}]}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["validate", "--mode", "container", str(f)]) == 1
    assert "machine.network.interfaces[0].cidr" in capsys.readouterr().err


def test_patch_passes_through_unchanged_without_patches(
    tmp_path, secrets_file, capsys, monkeypatch
):
    assert gen(tmp_path, secrets_file) == 0
    text = (tmp_path / "out" / "join.yaml").read_text() + "# trailing comment kept\n"
    src = tmp_path / "in.yaml"
    src.write_text(text)
    capsys.readouterr()
    assert main(["patch", str(src)]) == 0
    assert capsys.readouterr().out == text
    assert main(["patch", "-p", '{"machine": {"network": {"hostname": "w1"}}}', str(src)]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["machine"]["network"]["hostname"] == "w1"


def test_version_fast_path(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("talos-gen ")


def test_fast_path_matches_the_typer_command(tmp_path, secrets_file, capsys):
    """`config NAME ENDPOINT [-o] [--with-secrets] [--force]` skips Typer; same files either way."""
    from libtalos.fastpath import parse
    from talos_gen.cli import FAST_COMMANDS
    from talos_gen.commands.config import config_command

    fast = [
        "config",
        "demo",
        ENDPOINT,
        "--with-secrets",
        str(secrets_file),
        "-o",
        str(tmp_path / "fast"),
    ]
    assert parse(FAST_COMMANDS, fast) is not None
    assert main(fast) == 0
    config_command(
        "demo",
        ENDPOINT,
        output_dir=str(tmp_path / "typer"),
        force=False,
        with_secrets=str(secrets_file),
        install_disk="/dev/sda",
        install_image=None,
        additional_sans=None,
        dns_domain="cluster.local",
        kubernetes_version=None,
        registry_mirror=None,
        persist=True,
        talos_version="",
        config_version="v1alpha1",
        config_patch=None,
        config_patch_control_plane=None,
        config_patch_worker=None,
        with_docs=True,
    )
    for name in ("init.yaml", "controlplane.yaml", "join.yaml"):
        assert (tmp_path / "fast" / name).read_text() == (tmp_path / "typer" / name).read_text()
    # errors keep their codes on the fast path
    capsys.readouterr()
    assert main(fast) == 1 and "file exists" in capsys.readouterr().err
    assert main(["config", "demo", "http://x:1", "-o", str(tmp_path / "x")]) == 2
    # anything else goes through Typer (which knows every flag and reports typos)
    for other in (
        ["config", "demo", ENDPOINT, "--additional-sans", "a"],
        ["config", "demo", ENDPOINT, "-o", "a", "-o", "b"],
        ["config", "demo", ENDPOINT, "--with-secret", "f"],
        ["config", "--help"],
        ["config", "demo"],
    ):
        assert parse(FAST_COMMANDS, other) is None, other
    assert main(["config", "demo", ENDPOINT, "--with-secret", "f"]) == 2


def test_fast_path_does_not_import_the_cli_framework(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from talos_gen.cli import main; "
        f"rc = main(['config', 'demo', {ENDPOINT!r}, '-o', {str(tmp_path / 'o')!r}]); "
        "print(rc, 'typer' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]


def test_patch_warns_about_documents_it_cannot_patch(tmp_path, secrets_file, capsys):
    assert gen(tmp_path, secrets_file) == 0
    join = (tmp_path / "out" / "join.yaml").read_text()
    talosconfig = (tmp_path / "out" / "talosconfig").read_text()
    src = tmp_path / "in.yaml"
    src.write_text("foo: bar\n---\n" + join + "---\n" + talosconfig)
    capsys.readouterr()
    assert main(["patch", "-p", '{"machine": {"network": {"hostname": "w1"}}}', str(src)]) == 0
    captured = capsys.readouterr()
    docs = list(yaml.safe_load_all(captured.out))
    assert docs[0] == {"foo": "bar"} and docs[1]["machine"]["network"]["hostname"] == "w1"
    # the stray document is named; the talosconfig passes silently, as a `config -o -` stream has it
    assert captured.err == (
        f"warning: {src}:1 document 1: not a machine config (no `machine` key): "
        "passed through unpatched\n"
    )


def test_patch_from_stdin_with_at_dash(tmp_path, secrets_file, capsys, monkeypatch):
    import io

    assert gen(tmp_path, secrets_file) == 0
    src = tmp_path / "out" / "join.yaml"
    patch = b"machine:\n    network:\n        hostname: from-stdin\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(patch)))
    capsys.readouterr()
    assert main(["patch", "-p", "@-", str(src)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["machine"]["network"]["hostname"] == "from-stdin"
    # a file named "-" is not what @- means
    assert not (tmp_path / "-").exists()
    # stdin cannot be both the input and the patch
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(src.read_bytes())))
    assert main(["patch", "-p", "@-"]) == 2
    assert "@-: stdin is already the input" in capsys.readouterr().err
    # binary on stdin is named as such
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe\x00")))
    assert main(["patch", "-p", "@-", str(src)]) == 1
    assert "<stdin>: not UTF-8 text" in capsys.readouterr().err


def test_patch_at_dash_twice_and_a_stream_without_machine_configs(tmp_path, secrets_file, capsys):
    import io

    assert gen(tmp_path, secrets_file) == 0
    join = tmp_path / "out" / "join.yaml"
    capsys.readouterr()
    patch = "machine:\n    network:\n        hostname: x\n"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(patch.encode())))
        assert main(["patch", "-p", "@-", "-p", "@-", str(join)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--patch @-: given 2 times, but stdin can be read only once" in captured.err
    # patches for a stream holding no machine config would apply to nothing: exit 1, no output
    out = tmp_path / "patched.yaml"
    talosconfig_file = tmp_path / "out" / "talosconfig"
    argv = ["patch", "-p", '{"machine": {"network": {"hostname": "a"}}}', "-o", str(out)]
    assert main([*argv, str(talosconfig_file)]) == 1
    assert f"{talosconfig_file}: no machine config in the input" in capsys.readouterr().err
    assert not out.exists()
    # negative control: the same patch on the join config is written
    assert main([*argv, str(join)]) == 0
    assert yaml.safe_load(out.read_text())["machine"]["network"]["hostname"] == "a"


def test_config_patch_from_stdin(tmp_path, secrets_file, bundle_text, capsys, monkeypatch):
    import io

    patch = b"machine:\n    network:\n        hostname: from-stdin\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(patch)))
    assert gen(tmp_path, secrets_file, "--config-patch-worker", "@-") == 0
    join = yaml.safe_load((tmp_path / "out" / "join.yaml").read_text())
    assert join["machine"]["network"]["hostname"] == "from-stdin"
    cp = yaml.safe_load((tmp_path / "out" / "controlplane.yaml").read_text())
    assert cp["machine"]["network"].get("hostname") != "from-stdin"
    capsys.readouterr()
    # stdin read once: @- in two options is refused before anything is written
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(patch)))
    extra = ["--config-patch", "@-", "--config-patch-worker", "@-"]
    assert gen(tmp_path / "two", secrets_file, *extra) == 2
    assert "--config-patch @-: given 2 times" in capsys.readouterr().err
    assert not (tmp_path / "two").exists()
    # --with-secrets - already takes stdin
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(bundle_text.encode())))
    argv = ["config", "demo", ENDPOINT, "--with-secrets", "-", "--config-patch", "@-"]
    assert main([*argv, "-o", str(tmp_path / "three")]) == 2
    assert "--config-patch @-: stdin is already the input" in capsys.readouterr().err
    assert not (tmp_path / "three").exists()
