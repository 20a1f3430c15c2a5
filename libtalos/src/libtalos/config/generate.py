"""``gen config``: the init, controlplane and join configs of a cluster, from a secrets bundle.

Follows Talos v0.9's generator (docs/talos-facts.md#generated-machine-keys, #generated-cluster-keys,
#machine-types): init and controlplane differ only in ``machine.type``; join says ``type: worker``,
has no ``machine.ca``, carries the Kubernetes CA certificate without its key (``key: ""``) and none
of the control-plane sections. Generation is a pure function of its input and the bundle: the same
bundle always yields the same configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from libtalos.config.v1alpha1 import (
    DEFAULT_DNS_DOMAIN,
    DEFAULT_INSTALL_DISK,
    DEFAULT_INSTALL_IMAGE,
    DEFAULT_POD_SUBNET,
    DEFAULT_SERVICE_SUBNET,
    APIServerConfig,
    CertAndKey,
    ClusterConfig,
    ClusterNetworkConfig,
    Config,
    ControllerManagerConfig,
    ControlPlaneConfig,
    EtcdConfig,
    InstallConfig,
    KeyOnly,
    KubeletConfig,
    MachineConfig,
    NetworkConfig,
    ProxyConfig,
    Registries,
    RegistryMirror,
    SchedulerConfig,
    kubelet_image,
    kubernetes_image,
)
from libtalos.config.validate import (
    ENDPOINT_HINT,
    endpoint_problem,
    is_dns_name,
    mirror_endpoint_problem,
    san_problem,
)
from libtalos.errors import UsageError
from libtalos.secrets import CertKey, SecretsBundle, b64

# The backwards-compatibility contracts ``--talos-version`` accepts ("" = the current one).
TALOS_CONTRACTS = ("", "v0.8", "v0.9")
KINDS = ("init", "controlplane", "join")


@dataclass(frozen=True)
class GenerateInput:
    """What ``talosctl gen config`` takes besides the secrets (its arguments and flags)."""

    cluster_name: str
    endpoint: str
    kubernetes_version: str | None = None  # None: images are left to the runtime defaults
    install_disk: str = DEFAULT_INSTALL_DISK
    install_image: str = DEFAULT_INSTALL_IMAGE
    additional_sans: tuple[str, ...] | list[str] = ()
    dns_domain: str = DEFAULT_DNS_DOMAIN
    registry_mirrors: dict[str, list[str]] = field(default_factory=dict)  # host -> URLs
    persist: bool = True
    talos_version: str = ""  # "" or "v0.8" (no aggregator CA, no service account key)


def endpoint_host(endpoint: str) -> str:
    """The host part of an endpoint URL, without IPv6 brackets and without the port."""
    hostport = urlsplit(endpoint).netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return hostport.partition(":")[0]


def _check(inp: GenerateInput) -> None:
    if not inp.cluster_name:
        raise UsageError("cluster name must not be empty")
    what = endpoint_problem(inp.endpoint)
    if what is not None:
        raise UsageError(f"endpoint {inp.endpoint}: {what}", hint=ENDPOINT_HINT)
    if inp.talos_version not in TALOS_CONTRACTS:
        raise UsageError(
            f"unsupported Talos version contract {inp.talos_version!r} "
            f"(supported: {', '.join(repr(v) for v in TALOS_CONTRACTS)})"
        )
    if not is_dns_name(inp.dns_domain):
        raise UsageError(f"DNS domain {inp.dns_domain!r} is not a valid DNS name")
    # The rules of libtalos.config.validate, so that nothing generated fails validation.
    for host, urls in inp.registry_mirrors.items():
        if not host or not urls:
            raise UsageError("a registry mirror needs a host and a URL (host=url)")
        for url in urls:
            problem = mirror_endpoint_problem(url)
            if problem is not None:
                raise UsageError(f"registry mirror {host}: endpoint {url!r} {problem}")
    for san in inp.additional_sans:
        problem = san_problem(san)
        if problem is not None:
            raise UsageError(f"additional SAN {san!r}: {problem}")


def _pair(ck: CertKey, *, with_key: bool = True) -> CertAndKey:
    return CertAndKey(crt=b64(ck.crt), key=b64(ck.key) if with_key else "")


def _machine(inp: GenerateInput, bundle: SecretsBundle, machine_type: str) -> MachineConfig:
    version = inp.kubernetes_version
    machine = MachineConfig(
        type=machine_type,
        token=bundle.trustd_token,
        ca=_pair(bundle.talos_ca) if machine_type != "worker" else None,
        kubelet=KubeletConfig(image=kubelet_image(version) if version else ""),
        network=NetworkConfig(),
        install=InstallConfig(
            disk=inp.install_disk, image=inp.install_image, bootloader=True, wipe=False
        ),
    )
    if inp.registry_mirrors:
        machine.registries = Registries(
            mirrors={
                host: RegistryMirror(endpoints=list(urls))
                for host, urls in inp.registry_mirrors.items()
            }
        )
    return machine


def _cluster_network(inp: GenerateInput) -> ClusterNetworkConfig:
    # Talos v0.9 always ends up with the IPv4 defaults (docs/talos-facts.md#config-defaults).
    return ClusterNetworkConfig(
        dns_domain=inp.dns_domain,
        pod_subnets=[DEFAULT_POD_SUBNET],
        service_subnets=[DEFAULT_SERVICE_SUBNET],
    )


def _control_plane_cluster(inp: GenerateInput, bundle: SecretsBundle) -> ClusterConfig:
    version = inp.kubernetes_version

    def image(component: str) -> str:
        return kubernetes_image(component, version) if version else ""

    # Talos takes the host with SplitHostPort, so an endpoint without a port added no SAN; the
    # API server certificate needs the endpoint's host either way, so it is always added here.
    sans: list[str] = []
    for san in [endpoint_host(inp.endpoint), *inp.additional_sans]:
        if san and san not in sans:
            sans.append(san)
    legacy = inp.talos_version == "v0.8"  # the v0.8 contract has no aggregator CA / SA key
    return ClusterConfig(
        control_plane=ControlPlaneConfig(endpoint=inp.endpoint),
        cluster_name=inp.cluster_name,
        network=_cluster_network(inp),
        token=bundle.bootstrap_token,
        aescbc_encryption_secret=bundle.aescbc_encryption_secret,
        ca=_pair(bundle.kubernetes_ca),
        aggregator_ca=(
            _pair(bundle.aggregator_ca) if bundle.aggregator_ca is not None and not legacy else None
        ),
        service_account=(
            KeyOnly(key=b64(bundle.service_account_key))
            if bundle.service_account_key is not None and not legacy
            else None
        ),
        api_server=APIServerConfig(image=image("kube-apiserver"), cert_sans=sans),
        controller_manager=ControllerManagerConfig(image=image("kube-controller-manager")),
        proxy=ProxyConfig(image=image("kube-proxy")),
        scheduler=SchedulerConfig(image=image("kube-scheduler")),
        etcd=EtcdConfig(ca=_pair(bundle.etcd_ca)),
    )


def _worker_cluster(inp: GenerateInput, bundle: SecretsBundle) -> ClusterConfig:
    return ClusterConfig(
        control_plane=ControlPlaneConfig(endpoint=inp.endpoint),
        network=_cluster_network(inp),
        token=bundle.bootstrap_token,
        ca=_pair(bundle.kubernetes_ca, with_key=False),
    )


def generate(inp: GenerateInput, bundle: SecretsBundle) -> dict[str, Config]:
    """The ``init``, ``controlplane`` and ``join`` configs (keys in that order).

    Raises :class:`~libtalos.errors.UsageError` for a bad endpoint (with the
    ``try: https://host:6443`` hint), DNS domain, contract, mirror or SAN, by the rules of
    :func:`~libtalos.config.validate.validate`.
    """
    _check(inp)
    out: dict[str, Config] = {}
    for kind in KINDS:
        machine_type = "worker" if kind == "join" else kind
        cluster = (
            _worker_cluster(inp, bundle) if kind == "join" else _control_plane_cluster(inp, bundle)
        )
        out[kind] = Config(
            debug=False,
            persist=inp.persist,
            machine=_machine(inp, bundle, machine_type),
            cluster=cluster,
        )
    return out
