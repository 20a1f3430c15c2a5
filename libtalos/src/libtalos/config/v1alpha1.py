"""The v1alpha1 machine configuration (Talos v0.9), as typed models with their docs.

Every key a v0.9 machine config may hold is declared here once, with its description, allowed
values, examples and documented default (see :mod:`libtalos.config.schema`). Python attribute
names are snake_case; YAML keys are Talos's. A nested section that is ``None`` is absent from the
document (a nil pointer in Talos); an empty section object is written as ``{}``.

Defaults the runtime applies when a key is unset (Talos's ``constants.go`` at v0.9.3) are the
module constants below and the accessor methods (``Config.kubelet_image()`` ...).
"""

# ruff: noqa: RUF009
# (RUF009: `field(...)` below is this project's dataclass field specifier; it returns
#  dataclasses.field(...) with the docs in its metadata, not a shared default value.)

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from libtalos.config.schema import Example, field
from libtalos.yamlio import Document

# Talos v0.9.3 defaults (docs/talos-facts.md#config-defaults).
VERSION = "v1alpha1"
DEFAULT_KUBERNETES_VERSION = "1.20.6"
DEFAULT_TALOS_VERSION = "v0.9.3"
DEFAULT_INSTALL_IMAGE = f"ghcr.io/talos-systems/installer:{DEFAULT_TALOS_VERSION}"
DEFAULT_INSTALL_DISK = "/dev/sda"
KUBELET_IMAGE_REPOSITORY = "ghcr.io/talos-systems/kubelet"
KUBERNETES_IMAGE_REGISTRY = "k8s.gcr.io"
DEFAULT_ETCD_IMAGE = "gcr.io/etcd-development/etcd:v3.4.15"
DEFAULT_COREDNS_IMAGE = "docker.io/coredns/coredns:1.8.0"
DEFAULT_POD_CHECKPOINTER_IMAGE = "ghcr.io/talos-systems/pod-checkpointer:v0.9.3"  # UNVERIFIED tag
DEFAULT_POD_SUBNET = "10.244.0.0/16"
DEFAULT_SERVICE_SUBNET = "10.96.0.0/12"
DEFAULT_POD_SUBNET_V6 = "fc00:db8:10::/56"
DEFAULT_SERVICE_SUBNET_V6 = "fc00:db8:20::/112"
DEFAULT_DNS_DOMAIN = "cluster.local"
DEFAULT_CNI = "flannel"
DEFAULT_CONTROL_PLANE_PORT = 6443
DEFAULT_ADMIN_CERT_LIFETIME = "8760h0m0s"  # one year
MACHINE_TYPES = ("init", "controlplane", "join", "worker")
PROXY_MODES = ("iptables", "ipvs", "userspace")
FILE_OPS = ("create", "append", "overwrite")
DEFAULT_FILE_OP = "create"
DEFAULT_FILE_MODE = 0o644
ENCRYPTION_PROVIDERS = ("luks2",)
ENCRYPTION_CIPHERS = ("aes-xts-plain64",)
BOND_MODES = (
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
)

# Placeholders shown in commented examples (base64 of a truncated PEM block, not real keys).
_CRT_EXAMPLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJJekNCMXFBREFnRUNBaEFRCi0tLS0t" + (
    "RU5EIENFUlRJRklDQVRFLS0tLS0K"
)
_KEY_EXAMPLE = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1DNENBUUF3QlFZREsyVndCQ0lFSUFBQQot" + (
    "LS0tLUVORCBFQyBQUklWQVRFIEtFWS0tLS0tCg=="
)


# ---------------------------------------------------------------------------------------------
# Shared shapes


@dataclass
class CertAndKey:
    """A PEM certificate and key, each base64-encoded (Go ``PEMEncodedCertificateAndKey``)."""

    crt: str = field("crt", "Base64 of the PEM-encoded certificate.", default="", omitempty=False)
    key: str = field(
        "key", "Base64 of the PEM-encoded private key.", default="", omitempty=False, secret=True
    )


@dataclass
class KeyOnly:
    """A PEM private key, base64-encoded (Go ``PEMEncodedKey``)."""

    key: str = field(
        "key", "Base64 of the PEM-encoded private key.", default="", omitempty=False, secret=True
    )


@dataclass
class ExtraMount:
    """A host path bind-mounted into a container (a Kubernetes-style mount)."""

    destination: str = field(
        "destination", "Where the mount appears inside the container.", default=""
    )
    type: str = field("type", "The mount type, e.g. `bind`.", default="")
    source: str = field("source", "The host path to mount.", default="")
    options: list[str] = field(
        "options", "Mount options, e.g. `rbind`, `rshared`, `rw`.", factory=list
    )


@dataclass
class VolumeMount:
    """A host path mounted into a control-plane static pod."""

    host_path: str = field("hostPath", "The path on the host.", default="")
    mount_path: str = field("mountPath", "The path inside the pod.", default="")
    readonly: bool = field("readonly", "Mount read-only.", default=False)


# ---------------------------------------------------------------------------------------------
# machine


@dataclass
class KubeletConfig:
    image: str = field(
        "image",
        "An optional reference to an alternative kubelet image.",
        default="",
        examples=[Example(f"{KUBELET_IMAGE_REPOSITORY}:v{DEFAULT_KUBERNETES_VERSION}")],
        doc_default=f"{KUBELET_IMAGE_REPOSITORY}:v{DEFAULT_KUBERNETES_VERSION}",
    )
    extra_args: dict[str, str] = field(
        "extraArgs",
        "Extra command-line arguments for the kubelet, as a mapping of flag name to value.",
        factory=dict,
        examples=[Example({"feature-gates": "ServerSideApply=true"})],
    )
    extra_mounts: list[ExtraMount] = field(
        "extraMounts",
        "Extra host paths mounted into the kubelet container.",
        factory=list,
        examples=[
            Example(
                [
                    {
                        "destination": "/var/lib/example",
                        "type": "bind",
                        "source": "/var/lib/example",
                        "options": ["rbind", "rshared", "rw"],
                    }
                ]
            )
        ],
    )


@dataclass
class Route:
    network: str = field("network", "The destination network (a CIDR).", default="", required=True)
    gateway: str = field("gateway", "The gateway IP address.", default="")
    metric: int = field("metric", "The route's metric (priority).", default=0)


@dataclass
class VIPConfig:
    ip: str = field(
        "ip",
        "The shared (virtual) IP address, IPv4 or IPv6, held by one control-plane node at a time.",
        default="",
        examples=[Example("172.16.199.55")],
    )


@dataclass
class Bond:
    interfaces: list[str] = field(
        "interfaces", "The interfaces that make up the bond.", factory=list
    )
    mode: str = field("mode", "The bonding mode.", default="", values=BOND_MODES)
    lacp_rate: str = field("lacpRate", "The LACPDU rate (`slow` or `fast`).", default="")
    xmit_hash_policy: str = field("xmitHashPolicy", "The transmit hash policy.", default="")
    miimon: int = field("miimon", "The MII link monitoring interval, in milliseconds.", default=0)
    updelay: int = field(
        "updelay", "Delay before enabling a slave after link up, in ms.", default=0
    )
    downdelay: int = field(
        "downdelay", "Delay before disabling a slave after link down, in ms.", default=0
    )
    primary: str = field("primary", "The primary interface (active-backup).", default="")


@dataclass
class Vlan:
    cidr: str = field("cidr", "The VLAN interface's address (a CIDR).", default="")
    routes: list[Route] = field("routes", "Static routes on the VLAN interface.", factory=list)
    dhcp: bool = field("dhcp", "Configure the VLAN interface with DHCP.", default=False)
    vlan_id: int = field("vlanId", "The VLAN ID.", default=0)
    mtu: int = field("mtu", "The VLAN interface's MTU.", default=0)


@dataclass
class DHCPOptions:
    route_metric: int = field("routeMetric", "The metric of routes learned by DHCP.", default=0)


@dataclass
class WireguardPeer:
    public_key: str = field("publicKey", "The peer's public key.", default="")
    endpoint: str = field("endpoint", "The peer's `host:port`.", default="")
    persistent_keepalive_interval: str = field(
        "persistentKeepaliveInterval",
        "Keep-alive interval (a Go duration, e.g. `10s`).",
        default="",
    )
    allowed_ips: list[str] = field("allowedIPs", "The networks routed to the peer.", factory=list)


@dataclass
class Wireguard:
    private_key: str = field(
        "privateKey", "The interface's private key (base64).", default="", secret=True
    )
    listen_port: int = field("listenPort", "The UDP port to listen on.", default=0)
    firewall_mark: int = field("firewallMark", "The fwmark set on outgoing packets.", default=0)
    peers: list[WireguardPeer] = field("peers", "The interface's peers.", factory=list)


@dataclass
class Device:
    interface: str = field(
        "interface", "The interface name.", default="", examples=[Example("eth0")]
    )
    cidr: str = field(
        "cidr",
        "A static address for the interface, in CIDR notation.",
        default="",
        examples=[Example("10.5.0.0/16")],
    )
    routes: list[Route] = field(
        "routes",
        "Static routes for the interface.",
        factory=list,
        examples=[Example([{"network": "0.0.0.0/0", "gateway": "10.5.0.1"}])],
    )
    bond: Bond | None = field("bond", "Bond settings, when the interface is a bond.", default=None)
    vlans: list[Vlan] = field("vlans", "VLANs on the interface.", factory=list)
    mtu: int = field("mtu", "The interface's MTU.", default=0, examples=[Example(1500)])
    dhcp: bool = field(
        "dhcp",
        "Configure the interface with DHCP (cannot be combined with `cidr`).",
        default=False,
    )
    ignore: bool = field("ignore", "Leave the interface alone.", default=False)
    dummy: bool = field("dummy", "Create the interface as a dummy link.", default=False)
    dhcp_options: DHCPOptions | None = field(
        "dhcpOptions", "Options for the DHCP client.", default=None
    )
    wireguard: Wireguard | None = field(
        "wireguard", "WireGuard settings, when the interface is a WireGuard link.", default=None
    )
    vip: VIPConfig | None = field(
        "vip",
        "A shared IP address for the control plane (forbidden on workers).",
        default=None,
        examples=[Example({"ip": "172.16.199.55"})],
    )


@dataclass
class ExtraHost:
    ip: str = field("ip", "The IP address.", default="")
    aliases: list[str] = field("aliases", "Host names for the address.", factory=list)


@dataclass
class NetworkConfig:
    hostname: str = field(
        "hostname", "The machine's host name.", default="", examples=[Example("worker-1")]
    )
    interfaces: list[Device] = field(
        "interfaces",
        "Network interface configuration.",
        factory=list,
        examples=[
            Example(
                [
                    {
                        "interface": "eth0",
                        "cidr": "192.168.2.0/24",
                        "mtu": 1500,
                        "routes": [{"network": "0.0.0.0/0", "gateway": "192.168.2.1"}],
                    }
                ]
            )
        ],
    )
    nameservers: list[str] = field(
        "nameservers",
        "DNS servers used instead of those learned by DHCP.",
        factory=list,
        examples=[Example(["9.8.7.6", "8.7.6.5"])],
    )
    extra_host_entries: list[ExtraHost] = field(
        "extraHostEntries",
        "Extra entries for /etc/hosts.",
        factory=list,
        examples=[Example([{"ip": "192.168.1.100", "aliases": ["example", "example.domain.tld"]}])],
    )


@dataclass
class Partition:
    mountpoint: str = field("mountpoint", "Where to mount the partition.", default="")
    size: int = field(
        "size",
        "The partition's size in bytes; 0 fills the rest of the disk (only the last partition).",
        default=0,
        omitempty=False,
    )


@dataclass
class MachineDisk:
    device: str = field("device", "The disk's device path.", default="", required=True)
    partitions: list[Partition] = field(
        "partitions", "Partitions to create on the disk.", factory=list
    )


@dataclass
class InstallConfig:
    disk: str = field(
        "disk",
        "The disk Talos is installed to.",
        default="",
        examples=[Example(DEFAULT_INSTALL_DISK)],
    )
    extra_kernel_args: list[str] = field(
        "extraKernelArgs",
        "Extra kernel arguments for the installed system.",
        factory=list,
        examples=[Example(["talos.platform=metal", "reboot=k"])],
    )
    image: str = field(
        "image",
        "The installer image.",
        default="",
        examples=[Example(DEFAULT_INSTALL_IMAGE)],
    )
    bootloader: bool = field("bootloader", "Install a bootloader.", default=False)
    wipe: bool = field(
        "wipe",
        "Wipe the install disk before installing. Talos's doc text says it defaults to true; "
        "`gen config` writes false.",
        default=False,
        omitempty=False,
    )


@dataclass
class MachineFile:
    content: str = field(
        "content", "The file's contents.", default="", omitempty=False, required=True
    )
    permissions: int = field(
        "permissions",
        "The file's mode, e.g. `0644` (octal); 0 or unset means `0644`.",
        default=0,
        omitempty=False,
        doc_default="0644",
    )
    path: str = field("path", "The file's absolute path.", default="", required=True)
    op: str = field(
        "op",
        "How to write the file: `create` leaves an existing file as it is.",
        default="",
        values=FILE_OPS,
        omitempty=False,
        doc_default=DEFAULT_FILE_OP,
    )

    def mode(self) -> int:
        """The mode the file is written with (``permissions``, else the default)."""
        return self.permissions or DEFAULT_FILE_MODE

    def operation(self) -> str:
        """How the file is written (``op``, else ``create``)."""
        return self.op or DEFAULT_FILE_OP


@dataclass
class TimeConfig:
    disabled: bool = field("disabled", "Disable the time service (timed).", default=False)
    servers: list[str] = field(
        "servers",
        "NTP servers; the default is `pool.ntp.org`.",
        factory=list,
        doc_default="pool.ntp.org",
    )


@dataclass
class RegistryMirror:
    endpoints: list[str] = field(
        "endpoints", "The mirror's endpoints, tried in order (URLs).", factory=list, required=True
    )


@dataclass
class RegistryAuth:
    username: str = field("username", "The user name.", default="")
    password: str = field("password", "The password.", default="", secret=True)
    auth: str = field("auth", "base64 of `user:password`.", default="", secret=True)
    identity_token: str = field("identityToken", "An identity token.", default="", secret=True)


@dataclass
class RegistryTLS:
    client_identity: CertAndKey | None = field(
        "clientIdentity", "A client certificate and key for the registry.", default=None
    )
    ca: str = field("ca", "Base64 of the PEM CA certificate of the registry.", default="")
    insecure_skip_verify: bool = field(
        "insecureSkipVerify", "Skip verifying the registry's certificate.", default=False
    )


@dataclass
class RegistryConfig:
    tls: RegistryTLS | None = field("tls", "TLS settings for the registry.", default=None)
    auth: RegistryAuth | None = field("auth", "Credentials for the registry.", default=None)


@dataclass
class Registries:
    mirrors: dict[str, RegistryMirror] = field(
        "mirrors",
        "Mirrors per registry host (`*` for every host).",
        factory=dict,
        examples=[Example({"ghcr.io": {"endpoints": ["https://registry.local"]}})],
    )
    config: dict[str, RegistryConfig] = field(
        "config",
        "TLS and authentication per registry host.",
        factory=dict,
        examples=[
            Example(
                {
                    "registry.local:5000": {
                        "tls": {"insecureSkipVerify": True},
                        "auth": {"username": "user", "password": "secret"},
                    }
                }
            )
        ],
    )


@dataclass
class StaticKey:
    passphrase: str = field(
        "passphrase", "The passphrase.", default="", omitempty=False, secret=True
    )


@dataclass
class NodeIDKey:
    """Derives the key from the node's identity (nothing to configure)."""


@dataclass
class EncryptionKey:
    static: StaticKey | None = field("static", "A fixed passphrase.", default=None)
    node_id: NodeIDKey | None = field(
        "nodeID", "A key derived from the node's identity.", default=None
    )
    slot: int = field("slot", "The LUKS2 key slot.", default=0, omitempty=False, required=True)


@dataclass
class EncryptionConfig:
    provider: str = field(
        "provider",
        "The encryption provider.",
        default="",
        values=ENCRYPTION_PROVIDERS,
        omitempty=False,
        required=True,
    )
    keys: list[EncryptionKey] = field("keys", "The keys that open the volume.", factory=list)
    cipher: str = field(
        "cipher",
        "The cipher.",
        default="",
        values=ENCRYPTION_CIPHERS,
        doc_default="aes-xts-plain64",
    )
    key_size: int = field("keySize", "The key size in bits.", default=0)
    block_size: int = field("blockSize", "The sector size in bytes.", default=0)
    options: list[str] = field(
        "options",
        "cryptsetup performance options, e.g. `no_read_workqueue`.",
        factory=list,
    )


@dataclass
class SystemDiskEncryption:
    state: EncryptionConfig | None = field(
        "state", "Encryption of the STATE partition.", default=None
    )
    ephemeral: EncryptionConfig | None = field(
        "ephemeral",
        "Encryption of the EPHEMERAL partition.",
        default=None,
        examples=[Example({"provider": "luks2", "keys": [{"nodeID": {}, "slot": 0}]})],
    )


@dataclass
class MachineConfig:
    type: str = field(
        "type",
        "The machine's role in the cluster. `join` and `worker` mean the same "
        "(Talos v0.9 writes `worker` into join.yaml).",
        default="",
        values=MACHINE_TYPES,
        required=True,
    )
    token: str = field(
        "token",
        "The token a machine uses to join the cluster's PKI (trustd).",
        default="",
        secret=True,
        examples=[Example("328hom.uqjzh6jnn2eie9oi")],
    )
    ca: CertAndKey | None = field(
        "ca",
        "The root certificate authority of the Talos API (Ed25519).",
        default=None,
        examples=[Example({"crt": _CRT_EXAMPLE, "key": _KEY_EXAMPLE})],
    )
    cert_sans: list[str] = field(
        "certSANs",
        "Extra subject alternative names for the machine's API certificate.",
        factory=list,
        examples=[Example(["10.0.0.10", "172.16.0.10", "192.168.0.10"])],
    )
    kubelet: KubeletConfig | None = field("kubelet", "Options for the kubelet.", default=None)
    network: NetworkConfig | None = field(
        "network", "The machine's network configuration.", default=None
    )
    disks: list[MachineDisk] = field(
        "disks",
        "Extra disks to partition, format and mount.",
        factory=list,
        examples=[
            Example(
                [
                    {
                        "device": "/dev/sdb",
                        "partitions": [{"mountpoint": "/var/mnt/extra", "size": 0}],
                    }
                ]
            )
        ],
    )
    install: InstallConfig | None = field(
        "install", "How Talos is installed to disk.", default=None
    )
    files: list[MachineFile] = field(
        "files",
        "Files to create or change on the machine.",
        factory=list,
        examples=[
            Example(
                [
                    {
                        "content": "...",
                        "permissions": 0o666,
                        "path": "/tmp/file.txt",
                        "op": "append",
                    }
                ]
            )
        ],
    )
    env: dict[str, str] = field(
        "env",
        "Environment variables for all services.",
        factory=dict,
        examples=[
            Example({"GRPC_GO_LOG_VERBOSITY_LEVEL": "99", "GRPC_GO_LOG_SEVERITY_LEVEL": "info"})
        ],
    )
    time: TimeConfig | None = field(
        "time",
        "Time synchronisation.",
        default=None,
        examples=[Example({"disabled": False, "servers": ["time.cloudflare.com"]})],
    )
    sysctls: dict[str, str] = field(
        "sysctls",
        "Kernel parameters to set.",
        factory=dict,
        examples=[Example({"kernel.domainname": "talos.dev", "net.ipv4.ip_forward": "0"})],
    )
    registries: Registries | None = field(
        "registries",
        "Container image registry mirrors and settings.",
        default=None,
        examples=[Example({"mirrors": {"docker.io": {"endpoints": ["https://registry.local"]}}})],
    )
    system_disk_encryption: SystemDiskEncryption | None = field(
        "systemDiskEncryption",
        "Encryption of the system partitions (STATE, EPHEMERAL).",
        default=None,
        examples=[
            Example({"ephemeral": {"provider": "luks2", "keys": [{"nodeID": {}, "slot": 0}]}})
        ],
    )

    def is_worker(self) -> bool:
        """Any type other than init/controlplane is a worker (as in Talos)."""
        return self.type not in ("init", "controlplane")

    def is_control_plane(self) -> bool:
        return not self.is_worker()

    def install_disk(self) -> str:
        return self.install.disk if self.install is not None else ""

    def interfaces(self) -> list[Device]:
        return self.network.interfaces if self.network is not None else []


# ---------------------------------------------------------------------------------------------
# cluster


@dataclass
class ControlPlaneConfig:
    endpoint: str = field(
        "endpoint",
        "The canonical URL of the control plane (`https://host:port`).",
        default="",
        examples=[Example("https://1.2.3.4:6443")],
    )
    local_api_server_port: int = field(
        "localAPIServerPort",
        "The port the API server listens on on each control-plane node.",
        default=0,
        examples=[Example(443)],
        doc_default=str(DEFAULT_CONTROL_PLANE_PORT),
    )

    def local_port(self) -> int:
        return self.local_api_server_port or DEFAULT_CONTROL_PLANE_PORT


@dataclass
class CNIConfig:
    name: str = field(
        "name",
        "The CNI: `flannel` (the default) or `custom` with manifests from `urls`.",
        default="",
        values=("flannel", "custom"),
        doc_default=DEFAULT_CNI,
    )
    urls: list[str] = field(
        "urls",
        "URLs of the manifests of a custom CNI.",
        factory=list,
        examples=[
            Example(
                [
                    "https://raw.githubusercontent.com/cilium/cilium/v1.8/install/kubernetes/quick-install.yaml"
                ]
            )
        ],
    )


@dataclass
class ClusterNetworkConfig:
    cni: CNIConfig | None = field(
        "cni",
        "The CNI used by the cluster.",
        default=None,
        examples=[Example({"name": "custom", "urls": ["https://example.org/cni.yaml"]})],
        doc_default=DEFAULT_CNI,
    )
    dns_domain: str = field(
        "dnsDomain",
        "The domain used by Kubernetes DNS.",
        default="",
        examples=[Example(DEFAULT_DNS_DOMAIN)],
        doc_default=DEFAULT_DNS_DOMAIN,
    )
    pod_subnets: list[str] = field(
        "podSubnets",
        "The pod network CIDRs.",
        factory=list,
        examples=[Example([DEFAULT_POD_SUBNET])],
        doc_default=DEFAULT_POD_SUBNET,
    )
    service_subnets: list[str] = field(
        "serviceSubnets",
        "The service network CIDRs.",
        factory=list,
        examples=[Example([DEFAULT_SERVICE_SUBNET])],
        doc_default=DEFAULT_SERVICE_SUBNET,
    )


@dataclass
class APIServerConfig:
    image: str = field(
        "image",
        "The kube-apiserver image.",
        default="",
        examples=[
            Example(f"{KUBERNETES_IMAGE_REGISTRY}/kube-apiserver:v{DEFAULT_KUBERNETES_VERSION}")
        ],
        doc_default=f"{KUBERNETES_IMAGE_REGISTRY}/kube-apiserver:v{DEFAULT_KUBERNETES_VERSION}",
    )
    extra_args: dict[str, str] = field(
        "extraArgs", "Extra command-line arguments for kube-apiserver.", factory=dict
    )
    extra_volumes: list[VolumeMount] = field(
        "extraVolumes", "Extra host paths mounted into kube-apiserver.", factory=list
    )
    cert_sans: list[str] = field(
        "certSANs",
        "Extra subject alternative names for the API server's certificate.",
        factory=list,
        examples=[Example(["1.2.3.4", "4.5.6.7"])],
    )


@dataclass
class ControllerManagerConfig:
    image: str = field(
        "image",
        "The kube-controller-manager image.",
        default="",
        examples=[
            Example(
                f"{KUBERNETES_IMAGE_REGISTRY}/kube-controller-manager:v{DEFAULT_KUBERNETES_VERSION}"
            )
        ],
        doc_default=f"{KUBERNETES_IMAGE_REGISTRY}/kube-controller-manager:v{DEFAULT_KUBERNETES_VERSION}",
    )
    extra_args: dict[str, str] = field(
        "extraArgs", "Extra command-line arguments for kube-controller-manager.", factory=dict
    )
    extra_volumes: list[VolumeMount] = field(
        "extraVolumes", "Extra host paths mounted into kube-controller-manager.", factory=list
    )


@dataclass
class ProxyConfig:
    image: str = field(
        "image",
        "The kube-proxy image.",
        default="",
        examples=[Example(f"{KUBERNETES_IMAGE_REGISTRY}/kube-proxy:v{DEFAULT_KUBERNETES_VERSION}")],
        doc_default=f"{KUBERNETES_IMAGE_REGISTRY}/kube-proxy:v{DEFAULT_KUBERNETES_VERSION}",
    )
    mode: str = field(
        "mode",
        "The proxy mode of kube-proxy.",
        default="",
        values=PROXY_MODES,
        examples=[Example("ipvs")],
        doc_default="iptables",
    )
    extra_args: dict[str, str] = field(
        "extraArgs",
        "Extra command-line arguments for kube-proxy.",
        factory=dict,
        examples=[Example({"proxy-mode": "iptables"})],
    )


@dataclass
class SchedulerConfig:
    image: str = field(
        "image",
        "The kube-scheduler image.",
        default="",
        examples=[
            Example(f"{KUBERNETES_IMAGE_REGISTRY}/kube-scheduler:v{DEFAULT_KUBERNETES_VERSION}")
        ],
        doc_default=f"{KUBERNETES_IMAGE_REGISTRY}/kube-scheduler:v{DEFAULT_KUBERNETES_VERSION}",
    )
    extra_args: dict[str, str] = field(
        "extraArgs", "Extra command-line arguments for kube-scheduler.", factory=dict
    )
    extra_volumes: list[VolumeMount] = field(
        "extraVolumes", "Extra host paths mounted into kube-scheduler.", factory=list
    )


@dataclass
class EtcdConfig:
    image: str = field(
        "image",
        "The etcd image.",
        default="",
        examples=[Example(DEFAULT_ETCD_IMAGE)],
        doc_default=DEFAULT_ETCD_IMAGE,
    )
    ca: CertAndKey | None = field(
        "ca",
        "The etcd certificate authority.",
        default=None,
        examples=[Example({"crt": _CRT_EXAMPLE, "key": _KEY_EXAMPLE})],
    )
    extra_args: dict[str, str] = field(
        "extraArgs",
        "Extra command-line arguments for etcd.",
        factory=dict,
        examples=[Example({"election-timeout": "5000"})],
    )


@dataclass
class PodCheckpointer:
    image: str = field(
        "image",
        "The pod-checkpointer image.",
        default="",
        doc_default=DEFAULT_POD_CHECKPOINTER_IMAGE,
    )


@dataclass
class CoreDNS:
    image: str = field(
        "image",
        "The CoreDNS image.",
        default="",
        doc_default=DEFAULT_COREDNS_IMAGE,
        examples=[Example(DEFAULT_COREDNS_IMAGE)],
    )


@dataclass
class AdminKubeconfig:
    cert_lifetime: str = field(
        "certLifetime",
        "Lifetime of the admin kubeconfig's client certificate (a Go duration).",
        default="",
        examples=[Example("1h")],
        doc_default=DEFAULT_ADMIN_CERT_LIFETIME,
    )


@dataclass
class ClusterConfig:
    control_plane: ControlPlaneConfig | None = field(
        "controlPlane", "How to reach the control plane.", default=None
    )
    cluster_name: str = field("clusterName", "The cluster's name.", default="")
    network: ClusterNetworkConfig | None = field(
        "network", "The cluster's network settings.", default=None
    )
    token: str = field(
        "token",
        "The Kubernetes bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`).",
        default="",
        secret=True,
        examples=[Example("wlzjyw.bei2zfylhs2by0wd")],
    )
    aescbc_encryption_secret: str = field(
        "aescbcEncryptionSecret",
        "The key used to encrypt Kubernetes secrets at rest (base64 of 32 bytes).",
        default="",
        secret=True,
        examples=[Example("z01mye6j16bspJYtTB/5SFX8j7Ph4JXxM2Xuu4vsBPM=")],
    )
    ca: CertAndKey | None = field(
        "ca",
        "The Kubernetes certificate authority.",
        default=None,
        examples=[Example({"crt": _CRT_EXAMPLE, "key": _KEY_EXAMPLE})],
    )
    aggregator_ca: CertAndKey | None = field(
        "aggregatorCA",
        "The certificate authority of the API aggregation layer (front proxy).",
        default=None,
        examples=[Example({"crt": _CRT_EXAMPLE, "key": _KEY_EXAMPLE})],
    )
    service_account: KeyOnly | None = field(
        "serviceAccount",
        "The key that signs service account tokens.",
        default=None,
        examples=[Example({"key": _KEY_EXAMPLE})],
    )
    api_server: APIServerConfig | None = field(
        "apiServer", "Settings of kube-apiserver.", default=None
    )
    controller_manager: ControllerManagerConfig | None = field(
        "controllerManager", "Settings of kube-controller-manager.", default=None
    )
    proxy: ProxyConfig | None = field("proxy", "Settings of kube-proxy.", default=None)
    scheduler: SchedulerConfig | None = field(
        "scheduler", "Settings of kube-scheduler.", default=None
    )
    etcd: EtcdConfig | None = field("etcd", "Settings of etcd.", default=None)
    pod_checkpointer: PodCheckpointer | None = field(
        "podCheckpointer", "Settings of the pod checkpointer.", default=None
    )
    core_dns: CoreDNS | None = field("coreDNS", "Settings of CoreDNS.", default=None)
    extra_manifests: list[str] = field(
        "extraManifests",
        "URLs of extra manifests applied at bootstrap.",
        factory=list,
        examples=[Example(["https://www.example.com/manifest1.yaml"])],
    )
    extra_manifest_headers: dict[str, str] = field(
        "extraManifestHeaders",
        "HTTP headers sent when fetching the extra manifests.",
        factory=dict,
        examples=[Example({"Token": "1234567", "X-ExtraInfo": "info"})],
    )
    admin_kubeconfig: AdminKubeconfig | None = field(
        "adminKubeconfig",
        "Settings of the admin kubeconfig.",
        default=None,
        examples=[Example({"certLifetime": "1h"})],
    )
    allow_scheduling_on_masters: bool = field(
        "allowSchedulingOnMasters",
        "Allow ordinary pods on control-plane nodes.",
        default=False,
        examples=[Example(True)],
    )

    def endpoint(self) -> str:
        return self.control_plane.endpoint if self.control_plane is not None else ""

    def dns_domain(self) -> str:
        net = self.network
        return (net.dns_domain if net is not None else "") or DEFAULT_DNS_DOMAIN

    def pod_subnets(self) -> list[str]:
        net = self.network
        return (net.pod_subnets if net is not None else []) or [DEFAULT_POD_SUBNET]

    def service_subnets(self) -> list[str]:
        net = self.network
        return (net.service_subnets if net is not None else []) or [DEFAULT_SERVICE_SUBNET]

    def cni_name(self) -> str:
        net = self.network
        cni = net.cni if net is not None else None
        return (cni.name if cni is not None else "") or DEFAULT_CNI

    def etcd_image(self) -> str:
        return (self.etcd.image if self.etcd is not None else "") or DEFAULT_ETCD_IMAGE

    def api_server_image(self) -> str:
        img = self.api_server.image if self.api_server is not None else ""
        return img or kubernetes_image("kube-apiserver")

    def controller_manager_image(self) -> str:
        cm = self.controller_manager
        return (cm.image if cm is not None else "") or kubernetes_image("kube-controller-manager")

    def proxy_image(self) -> str:
        img = self.proxy.image if self.proxy is not None else ""
        return img or kubernetes_image("kube-proxy")

    def scheduler_image(self) -> str:
        img = self.scheduler.image if self.scheduler is not None else ""
        return img or kubernetes_image("kube-scheduler")

    def coredns_image(self) -> str:
        return (self.core_dns.image if self.core_dns is not None else "") or DEFAULT_COREDNS_IMAGE


def kubernetes_image(component: str, version: str = DEFAULT_KUBERNETES_VERSION) -> str:
    """``k8s.gcr.io/<component>:v<version>`` (a leading ``v`` in ``version`` is accepted)."""
    return f"{KUBERNETES_IMAGE_REGISTRY}/{component}:v{version.removeprefix('v')}"


def kubelet_image(version: str = DEFAULT_KUBERNETES_VERSION) -> str:
    return f"{KUBELET_IMAGE_REPOSITORY}:v{version.removeprefix('v')}"


@dataclass
class Config:
    """A v1alpha1 machine configuration document."""

    version: str = field(
        "version",
        "The schema used to decode the document.",
        default=VERSION,
        values=(VERSION,),
        omitempty=False,
    )
    debug: bool = field("debug", "Verbose logging to the console.", default=False, omitempty=False)
    persist: bool = field(
        "persist",
        "Keep the machine config on disk instead of fetching it on every boot.",
        default=True,
        omitempty=False,
    )
    machine: MachineConfig = field(
        "machine",
        "Machine-specific settings.",
        factory=MachineConfig,
        required=True,
        omitempty=False,
    )
    cluster: ClusterConfig = field(
        "cluster",
        "Cluster-wide settings.",
        factory=ClusterConfig,
        required=True,
        omitempty=False,
    )

    # The document this config was loaded from (for line numbers); not part of the model.
    source_document: Document | None = dataclasses.field(default=None, repr=False, compare=False)

    def kubelet_image(self) -> str:
        k = self.machine.kubelet
        return (k.image if k is not None else "") or kubelet_image()
