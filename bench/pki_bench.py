"""talos-pki figures beside their references, measured in the same run.

- start-up: ``talos-pki --version`` (goal <= 3x) and ``talos-pki fingerprint CERT`` (goal <= 5x)
  against ``python -c pass``;
- ``talos-pki secrets`` end to end (goal < 100 ms median);
- N leaf certificates from one ECDSA P-256 CA (default 1000; goal >= 10x faster than openssl):
  libtalos.pki in one process (a fresh key per certificate) against a loop of the openssl CLI
  doing ``openssl req -new -key`` + ``openssl x509 -req -CA`` per certificate (same key type and
  signature hash; openssl reuses one pre-generated key, so it does less work than we do);
- one leaf certificate through the CLI: ``talos-pki issue`` against that openssl pair.

Run: ``python bench/pki_bench.py [--count N]`` or through ``bench/run.py pki``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, PYTHON, interleaved, row

TALOS_PKI = str(BIN / "talos-pki")


def _startup(tmp: Path) -> None:
    from libtalos import pki

    cert = tmp / "ca.pem"
    cert.write_bytes(pki.generate_secrets().talos_ca.crt)
    times = interleaved(
        {
            "python -c pass": [PYTHON, "-c", "pass"],
            "talos-pki --version": [TALOS_PKI, "--version"],
            "talos-pki fingerprint CERT": [TALOS_PKI, "fingerprint", str(cert)],
            "talos-pki secrets": [TALOS_PKI, "secrets"],
        }
    )
    base = times["python -c pass"]
    print("== talos-pki start-up and secrets (median of 21, interleaved)")
    row("python -c pass", base)
    row("talos-pki --version", times["talos-pki --version"], "python", base, "<= 3x")
    row("talos-pki fingerprint CERT", times["talos-pki fingerprint CERT"], "python", base, "<= 5x")
    row("talos-pki secrets", times["talos-pki secrets"], "python", base, "< 100 ms")


def _openssl_ca(tmp: Path) -> tuple[Path, Path, Path, Path]:
    """An ECDSA P-256 CA (signed with SHA-512, as Talos v0.9), its key, a leaf key, extensions."""
    ca_key, ca_crt, leaf_key = tmp / "ca.key", tmp / "ca.crt", tmp / "leaf.key"
    ext = tmp / "leaf.ext"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key)],
        check=True,
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            str(ca_key),
            "-sha512",
            "-days",
            "3650",
            "-subj",
            "/O=etcd",
            "-out",
            str(ca_crt),
        ],
        check=True,
    )
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(leaf_key)],
        check=True,
    )
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=DNS:node,IP:10.5.0.2\n"
    )
    return ca_key, ca_crt, leaf_key, ext


def _openssl_one(tmp: Path, i: int, ca_key: Path, ca_crt: Path, leaf_key: Path, ext: Path) -> None:
    csr, crt = tmp / "leaf.csr", tmp / f"leaf{i % 2}.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-key",
            str(leaf_key),
            "-subj",
            f"/CN=node{i}",
            "-out",
            str(csr),
        ],
        check=True,
    )
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-set_serial",
            str(1000 + i),
            "-days",
            "365",
            "-sha512",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        ],
        check=True,
        stderr=subprocess.DEVNULL,
    )


def _leaves(tmp: Path, count: int) -> None:
    import datetime as dt

    from libtalos import pki
    from libtalos.secrets import CertKey

    ca_key, ca_crt, leaf_key, ext = _openssl_ca(tmp)
    loaded = pki.LoadedCA.load(CertKey(ca_crt.read_bytes(), ca_key.read_bytes()), "CA")

    start = time.perf_counter()
    for i in range(count):
        pki.issue(
            loaded,
            kind="peer",
            common_name=f"node{i}",
            dns_names=["node"],
            ip_addresses=["10.5.0.2"],
            ttl=dt.timedelta(days=365),
        )
    ours = time.perf_counter() - start

    start = time.perf_counter()
    for i in range(count):
        _openssl_one(tmp, i, ca_key, ca_crt, leaf_key, ext)
    theirs = time.perf_counter() - start

    print(f"== {count} leaf certificates from one ECDSA P-256 CA (SHA-512 signatures)")
    row(f"libtalos.pki.issue x{count}", ours, f"openssl CLI x{count}", theirs)
    print(f"   speed-up: {theirs / ours:.1f}x (goal >= 10x)", flush=True)

    # One certificate through each CLI, interleaved.
    ca_yaml = tmp / "ca.yaml"
    ca_yaml.write_text(
        "crt: {crt}\nkey: {key}\n".format(
            **CertKey(ca_crt.read_bytes(), ca_key.read_bytes()).to_yaml()
        )
    )
    ours_cli: list[float] = []
    theirs_cli: list[float] = []
    for i in range(11):
        start = time.perf_counter()
        subprocess.run(
            [
                TALOS_PKI,
                "issue",
                "--ca",
                str(ca_yaml),
                "--cn",
                f"node{i}",
                "--dns",
                "node",
                "--ip",
                "10.5.0.2",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        ours_cli.append(time.perf_counter() - start)
        start = time.perf_counter()
        _openssl_one(tmp, i, ca_key, ca_crt, leaf_key, ext)
        theirs_cli.append(time.perf_counter() - start)
    row(
        "talos-pki issue (one cert, one process)",
        statistics.median(ours_cli),
        "openssl req+x509",
        statistics.median(theirs_cli),
    )


def _precompile() -> None:
    """Write the bytecode caches a normal install has.

    With PYTHONDONTWRITEBYTECODE set (as in some CI shells) every run would compile libtalos and
    talos_pki from source, which is start-up time no installed tool pays.
    """
    import compileall

    import libtalos
    import talos_pki

    for package in (libtalos, talos_pki):
        compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="leaf certificates (default 1000)")
    args = parser.parse_args([] if argv is None else argv)
    if shutil.which("openssl") is None:
        raise SystemExit("bench: the openssl CLI is needed as the reference (apt package openssl)")
    _precompile()
    with tempfile.TemporaryDirectory() as tmp:
        _startup(Path(tmp))
        _leaves(Path(tmp), args.count)


if __name__ == "__main__":
    main(sys.argv[1:])
