"""The command line in-process: bad input gives a clear message and the documented exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from talos_vip.cli import main
from talos_vip.options import Common, resolve

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "config" / "golden" / "controlplane.yaml"
NETWORK = """\
    network:
        hostname: cp-1
        interfaces:
            - interface: eth0
              cidr: 172.16.199.10/24
            - interface: eth1
              vip:
                  ip: 172.16.199.55
"""
# A controlplane config as `gen config` writes it, with a VIP on eth1.
CONFIG = GOLDEN.read_text().replace("    network: {}\n", NETWORK, 1)


def _line(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _resolve(**kw: object) -> Common:
    args: dict[str, object] = {
        "config": None,
        "interface": None,
        "vip": None,
        "etcd_endpoints": None,
        "etcd_ca": None,
        "etcd_cert": None,
        "etcd_key": None,
        "node_name": None,
        "need_interface": True,
    }
    args.update(kw)
    return resolve(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["run", "--vip", "10.66.0.400", "--interface", "eth0"],
            2,
            "--vip: '10.66.0.400' is not an IPv4 or IPv6 address",
        ),
        (
            ["run", "--vip", "10.66.0.0/24", "--interface", "eth0"],
            2,
            "--vip: '10.66.0.0/24' is not an IPv4 or IPv6 address",
        ),
        (
            ["run", "--vip", "ff02::1", "--interface", "eth0"],
            2,
            "--vip: ff02::1 cannot be a shared IP",
        ),
        (["run", "--vip", "fe80::1", "--interface", "eth0"], 2, "link-local"),
        (["run", "--vip", "10.66.0.100"], 2, "--interface is required"),
        (["run", "--interface", "eth0"], 2, "--vip is required"),
        (
            ["run", "--vip", "10.66.0.100", "--interface", "eth0", "--etcd-endpoints", "ftp://x"],
            2,
            "--etcd-endpoints: 'ftp://x' is not an etcd endpoint",
        ),
        (
            ["run", "--vip", "10.66.0.100", "--interface", "eth0", "--etcd-cert", "c.pem"],
            2,
            "--etcd-cert and --etcd-key go together",
        ),
        (
            ["run", "--vip", "10.66.0.100", "--interface", "eth0", "--lease-ttl", "0"],
            2,
            "--lease-ttl",
        ),
        (
            ["run", "--vip", "10.66.0.100", "--interface", "nosuch-if0"],
            1,
            "--interface: no interface named 'nosuch-if0'",
        ),
        (["run", "--config", "/nonexistent/cp.yaml"], 1, "/nonexistent/cp.yaml: no such file"),
    ],
)
def test_bad_input(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_config_supplies_interface_vip_and_name(tmp_path: Path) -> None:
    cfg = tmp_path / "cp.yaml"
    cfg.write_text(CONFIG)
    got = _resolve(config=str(cfg))
    assert (got.interface, str(got.vip), got.node_name) == ("eth1", "172.16.199.55", "cp-1")
    # Flags win over the config.
    got = _resolve(config=str(cfg), node_name="other")
    assert got.node_name == "other"


def test_config_alone_uses_the_node_etcd_and_its_client_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from libtalos.k8s.etcd import PKI_DIR

    cfg = tmp_path / "cp.yaml"
    cfg.write_text(CONFIG)
    got = _resolve(config=str(cfg))
    assert [str(e) for e in got.endpoints] == ["https://127.0.0.1:2379"]
    assert (got.etcd_ca, got.etcd_cert, got.etcd_key) == (
        f"{PKI_DIR}/ca.crt",
        f"{PKI_DIR}/client.crt",
        f"{PKI_DIR}/client.key",
    )
    if Path(PKI_DIR).exists():
        return  # a real node: the files are there, nothing to report
    assert main(["run", "--config", str(cfg)]) == 1
    assert f"error: --etcd-ca: {PKI_DIR}/ca.crt: no such file" in capsys.readouterr().err
    # Any etcd flag turns the node defaults off.
    got = _resolve(config=str(cfg), etcd_endpoints="http://127.0.0.1:2379")
    assert got.etcd_ca is None and [str(e) for e in got.endpoints] == ["http://127.0.0.1:2379"]


def test_config_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(CONFIG))
    got = _resolve(config="-")
    assert str(got.vip) == "172.16.199.55"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            CONFIG.replace("172.16.199.55", "172.16.199.555"),
            f"cp.yaml:{_line(CONFIG, 'ip: 172.16.199.55')} document 1: "
            "machine.network.interfaces[1].vip.ip: '172.16.199.555' is not an IPv4 or IPv6 address",
        ),
        (CONFIG.replace("ip: 172.16.199.55", "ip: [1]"), "machine.network.interfaces[1].vip.ip"),
        (
            CONFIG.replace("ip: 172.16.199.55", "ipp: 172.16.199.55"),
            "machine.network.interfaces[1].vip.ipp",
        ),
        (
            CONFIG.replace("            - interface: eth1\n", "            - mtu: 1500\n"),
            "machine.network.interfaces[1].interface: must name the interface of the VIP",
        ),
        (
            CONFIG.replace(
                "ip: 172.16.199.55\n", "ip: 172.16.199.55\n                  ip: 10.0.0.1\n"
            ),
            f"cp.yaml:{_line(CONFIG, 'ip: 172.16.199.55') + 1} document 1: "
            "machine.network.interfaces[1].vip.ip: duplicate key",
        ),
        (CONFIG.replace("interfaces:", "interfaces: {"), "malformed YAML"),
        (
            CONFIG.replace("              vip:\n                  ip: 172.16.199.55\n", ""),
            "no machine.network.interfaces[].vip.ip in this config",
        ),
    ],
)
def test_bad_config(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "cp.yaml"
    cfg.write_text(text)
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


def test_status_with_etcd_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    assert main(["status", "--vip", "10.66.0.100", "--etcd-endpoints", "http://127.0.0.1:1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "etcd http://127.0.0.1:1: kv/range: ConnectionRefusedError" in captured.err


def test_version_imports_nothing_heavy() -> None:
    code = (
        "import sys; from talos_vip.cli import main; rc = main(['--version']); "
        "heavy = [m for m in ('typer', 'click', 'pyroute2', 'yaml') if m in sys.modules]; "
        "print(rc, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.splitlines()[-1] == "0 []"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "run" in out and "status" in out
