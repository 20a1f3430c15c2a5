"""The work of ``talos-gen config NAME ENDPOINT``: the files of Talos's "Configure Talos" step.

No CLI framework here: the command module (:mod:`talos_gen.commands.config`) and the start-up fast
path of :mod:`talos_gen.cli` both call :func:`run`.

Writes ``init.yaml``, ``controlplane.yaml``, ``join.yaml`` and ``talosconfig`` into
``--output-dir`` (or all four as one YAML stream on stdout with ``-o -``). Every file is 0600:
each holds a token or a CA key. No file is written unless all can be: existing outputs are
checked first and refused without ``--force``, and each file is written atomically.

Flags are checked with the rules ``talos-gen validate`` applies (usage error, exit 2, naming the
flag and the value), and every generated config is validated before anything is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MACHINE_TYPES = ("init", "controlplane", "join")


class Output:
    """One generated file: its name and text."""

    __slots__ = ("name", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text


def split_list(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated values, stripped; an empty entry (``a,,b``) is kept as
    ``""`` so that the flag's check reports it."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(","))
    return out


def _shown(value: str) -> str:
    """``value`` as quoted in a message, with user information of a URL masked."""
    head, sep, rest = value.partition("://")
    netloc, slash, tail = rest.partition("/")
    if sep and "@" in netloc:
        value = f"{head}://***@{netloc.rpartition('@')[2]}{slash}{tail}"
    return repr(value)


MIRROR_HINT = "e.g. --registry-mirror docker.io=http://172.20.0.1:5000"


def mirrors(values: list[str] | None) -> dict[str, list[str]]:
    from libtalos.config.validate import mirror_endpoint_problem
    from libtalos.errors import UsageError

    found: dict[str, list[str]] = {}
    for value in values or []:
        host, sep, url = value.partition("=")
        if not sep or not host or not url:
            raise UsageError(
                f"--registry-mirror {_shown(value)}: expected host=url", hint=MIRROR_HINT
            )
        problem = mirror_endpoint_problem(url)
        if problem is not None:
            raise UsageError(
                f"--registry-mirror {_shown(value)}: {_shown(url)} {problem}", hint=MIRROR_HINT
            )
        found.setdefault(host, []).append(url)
    return found


def check_flags(*, additional_sans: list[str], dns_domain: str) -> None:
    """The flags that become config values, by the rules of ``talos-gen validate``."""
    from libtalos.config.validate import is_dns_name, san_problem
    from libtalos.errors import UsageError

    for san in additional_sans:
        problem = san_problem(san)
        if problem is not None:
            raise UsageError(
                f"--additional-sans {san!r}: {problem}",
                hint="IP addresses or DNS names, e.g. --additional-sans 10.5.0.2,api.example.org"
                + (" (an empty entry comes from ',,' or a ',' at either end)" if not san else ""),
            )
    if not is_dns_name(dns_domain):
        raise UsageError(f"--dns-domain {dns_domain!r}: must be a valid DNS name")


def build(
    name: str,
    endpoint: str,
    *,
    secrets_text: tuple[str, str] | None = None,
    install_disk: str = "/dev/sda",
    install_image: str | None = None,
    additional_sans: list[str] | None = None,
    dns_domain: str = "cluster.local",
    kubernetes_version: str | None = None,
    registry_mirrors: dict[str, list[str]] | None = None,
    persist: bool = True,
    talos_version: str = "",
    patches: list[str] | None = None,
    patches_control_plane: list[str] | None = None,
    patches_worker: list[str] | None = None,
    with_comments: bool = True,
) -> list[Output]:
    """Generate every output in memory (nothing is written here)."""
    from libtalos import config as cfgmod
    from libtalos import pki, talosconfig
    from libtalos.config.validate import endpoint_problem
    from libtalos.errors import UsageError, ValidationError
    from libtalos.patch import patch_config, read_patch_groups
    from libtalos.secrets import load_bundle

    problem = endpoint_problem(endpoint)
    if problem is not None:
        raise UsageError(f"endpoint {endpoint!r}: {problem}", hint="try: https://host:6443")

    check_flags(additional_sans=list(additional_sans or []), dns_domain=dns_domain)
    common, cp_only, worker_only = read_patch_groups(
        patches,
        patches_control_plane,
        patches_worker,
        stdin_taken=secrets_text is not None and secrets_text[1] == "<stdin>",  # --with-secrets -
    )
    if secrets_text is not None:
        bundle = load_bundle(*secrets_text)
    else:
        bundle = pki.generate_secrets(contract="v0.8" if talos_version == "v0.8" else "")
    inp = cfgmod.GenerateInput(
        cluster_name=name,
        endpoint=endpoint,
        kubernetes_version=kubernetes_version or None,
        install_disk=install_disk,
        additional_sans=list(additional_sans or []),
        dns_domain=dns_domain,
        registry_mirrors=dict(registry_mirrors or {}),
        persist=persist,
        talos_version=talos_version,
        **({"install_image": install_image} if install_image else {}),
    )
    configs = cfgmod.generate(inp, bundle)

    outputs: list[Output] = []
    for kind in MACHINE_TYPES:
        own = worker_only if kind == "join" else cp_only
        cfg = patch_config(configs[kind], common + own, f"{kind}.yaml")
        result = cfgmod.validate(cfg, "container")  # metal's disk check is the node's business
        if result.errors:
            raise ValidationError(result.errors, summary=f"{kind}.yaml would not be valid:")
        outputs.append(Output(f"{kind}.yaml", cfgmod.encode(cfg, comments=with_comments)))

    admin = pki.admin_client_cert(bundle.talos_ca)
    client = talosconfig.for_cluster(name, ["127.0.0.1"], bundle.talos_ca.crt, admin.crt, admin.key)
    outputs.append(Output("talosconfig", client.to_yaml()))
    return outputs


def write(outputs: list[Output], output_dir: str, *, force: bool) -> None:
    """Write every output or none: a full disk or an existing file changes nothing."""
    from libtalos import yamlio
    from libtalos.errors import TalosIOError
    from libtalos.fsutil import SECRET_MODE, atomic_write_many

    if output_dir == "-":
        sys.stdout.write(yamlio.join_documents([o.text for o in outputs]))
        sys.stdout.flush()
        return
    directory = Path(output_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TalosIOError(f"{directory}: cannot create directory: {exc.strerror}") from None
    files = [(directory / o.name, o.text, SECRET_MODE) for o in outputs]
    for path in atomic_write_many(files, force=force):
        sys.stderr.write(f"created {path}\n")


def run(
    name: str,
    endpoint: str,
    *,
    output_dir: str = ".",
    force: bool = False,
    with_secrets: str | None = None,
    config_version: str = "v1alpha1",
    **options: Any,
) -> None:
    """Read the secrets (if any), generate, write: the whole command."""
    from libtalos.errors import UsageError
    from libtalos.fsutil import read_input

    if config_version != "v1alpha1":
        raise UsageError(f"--version {config_version!r}: only v1alpha1 is supported")
    secrets_text = read_input(with_secrets) if with_secrets else None
    write(build(name, endpoint, secrets_text=secrets_text, **options), output_dir, force=force)
