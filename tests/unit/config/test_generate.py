"""Generation: golden output per document kind, Talos v0.9's differences, round trips."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from libtalos.config import GenerateInput, encode, generate, load, validate
from libtalos.config.generate import endpoint_host
from libtalos.errors import UsageError
from libtalos.secrets import SecretsBundle, b64

BASE = GenerateInput(cluster_name="demo", endpoint="https://10.5.0.2:6443")
FULL = GenerateInput(
    cluster_name="full",
    endpoint="https://[fd00::2]:443",
    kubernetes_version="v1.20.6",
    install_disk="/dev/vda",
    install_image="ghcr.io/talos-systems/installer:v0.9.1",
    additional_sans=["api.example.org", "fd00::2", "10.0.0.1"],
    dns_domain="cluster.example",
    registry_mirrors={"docker.io": ["http://172.20.0.1:5000", "https://mirror.example"]},
    persist=False,
    talos_version="v0.8",
)


@pytest.mark.parametrize("kind", ["init", "controlplane", "join"])
def test_golden_commented(
    kind: str, bundle: SecretsBundle, golden: Callable[[str, str], None]
) -> None:
    golden(f"{kind}.yaml", encode(generate(BASE, bundle)[kind]))


@pytest.mark.parametrize("kind", ["controlplane", "join"])
def test_golden_plain_all_options(
    kind: str, bundle: SecretsBundle, golden: Callable[[str, str], None]
) -> None:
    golden(f"{kind}-options.yaml", encode(generate(FULL, bundle)[kind], comments=False))


@pytest.mark.parametrize("inp", [BASE, FULL], ids=["defaults", "options"])
@pytest.mark.parametrize("comments", [True, False])
def test_round_trip(inp: GenerateInput, comments: bool, bundle: SecretsBundle) -> None:
    for kind, cfg in generate(inp, bundle).items():
        text = encode(cfg, comments=comments)
        loaded = load(text, f"{kind}.yaml")
        assert loaded.config == cfg, kind
        assert loaded.text == text
        assert encode(loaded.config, comments=comments) == text


@pytest.mark.parametrize("inp", [BASE, FULL], ids=["defaults", "options"])
def test_generated_configs_validate(inp: GenerateInput, bundle: SecretsBundle) -> None:
    for kind, cfg in generate(inp, bundle).items():
        for mode in ("cloud", "container"):
            assert validate(cfg, mode).errors == [], (kind, mode)
        result = validate(cfg, "metal", path_exists=lambda p: p == inp.install_disk)
        assert result.errors == [], kind


def test_init_and_controlplane_differ_only_in_type(bundle: SecretsBundle) -> None:
    cfgs = generate(BASE, bundle)
    init = encode(cfgs["init"]).splitlines()
    cp = encode(cfgs["controlplane"]).splitlines()
    diff = [(a, b) for a, b in zip(init, cp, strict=True) if a != b]
    assert [(a.split("#")[0], b.split("#")[0]) for a, b in diff] == [
        ("    type: init ", "    type: controlplane ")
    ]


def test_talos_v09_shape_of_each_kind(bundle: SecretsBundle) -> None:
    cfgs = generate(BASE, bundle)
    init, join = cfgs["init"], cfgs["join"]
    # top level and machine (docs/talos-facts.md#generated-machine-keys)
    assert (init.version, init.debug, init.persist) == ("v1alpha1", False, True)
    assert init.machine.token == bundle.trustd_token
    assert init.machine.ca is not None and init.machine.ca.crt == b64(bundle.talos_ca.crt)
    assert init.machine.cert_sans == []
    assert init.machine.kubelet is not None and init.machine.kubelet.image == ""
    assert init.machine.install is not None
    assert (init.machine.install.disk, init.machine.install.image) == (
        "/dev/sda",
        "ghcr.io/talos-systems/installer:v0.9.3",
    )
    assert (init.machine.install.bootloader, init.machine.install.wipe) == (True, False)
    # cluster (§1.3)
    cl = init.cluster
    assert cl.endpoint() == "https://10.5.0.2:6443" and cl.cluster_name == "demo"
    assert cl.network is not None and cl.network.cni is None
    assert (cl.network.dns_domain, cl.network.pod_subnets, cl.network.service_subnets) == (
        "cluster.local",
        ["10.244.0.0/16"],
        ["10.96.0.0/12"],
    )
    assert cl.token == bundle.bootstrap_token
    assert cl.aescbc_encryption_secret == bundle.aescbc_encryption_secret
    assert cl.aggregator_ca is not None and cl.service_account is not None
    assert cl.api_server is not None and cl.api_server.cert_sans == ["10.5.0.2"]
    assert cl.api_server.image == "" and cl.etcd is not None and cl.etcd.ca is not None
    assert cl.allow_scheduling_on_masters is False and cl.extra_manifests == []
    # join (§1.3, §1.6)
    assert join.machine.type == "worker" and join.machine.ca is None
    jc = join.cluster
    assert jc.ca is not None and jc.ca.key == "" and jc.ca.crt == b64(bundle.kubernetes_ca.crt)
    assert jc.cluster_name == "" and jc.aescbc_encryption_secret == ""
    assert (jc.aggregator_ca, jc.service_account, jc.api_server, jc.etcd) == (None,) * 4
    assert (jc.controller_manager, jc.proxy, jc.scheduler) == (None,) * 3
    text = encode(join, comments=False)
    assert "    ca:\n        crt: " in text and '\n        key: ""\n' in text
    assert "clusterName" not in text and "aescbcEncryptionSecret" not in text
    assert "\n    network: {}\n" in text and "\n    kubelet: {}\n" in text


def test_options(bundle: SecretsBundle) -> None:
    cfgs = generate(FULL, bundle)
    cp, join = cfgs["controlplane"], cfgs["join"]
    assert cp.persist is False and join.persist is False
    assert cp.kubelet_image() == "ghcr.io/talos-systems/kubelet:v1.20.6"
    assert cp.cluster.api_server_image() == "k8s.gcr.io/kube-apiserver:v1.20.6"
    assert cp.cluster.proxy is not None
    assert cp.cluster.proxy.image == "k8s.gcr.io/kube-proxy:v1.20.6"
    assert cp.cluster.api_server is not None
    assert cp.cluster.api_server.cert_sans == ["fd00::2", "api.example.org", "10.0.0.1"]
    assert cp.cluster.aggregator_ca is None and cp.cluster.service_account is None  # v0.8
    assert cp.machine.registries is not None
    assert cp.machine.registries.mirrors["docker.io"].endpoints == [
        "http://172.20.0.1:5000",
        "https://mirror.example",
    ]
    assert cp.cluster.dns_domain() == "cluster.example"
    assert join.machine.install is not None and join.machine.install.disk == "/dev/vda"


def test_same_bundle_same_output(bundle: SecretsBundle) -> None:
    first = {k: encode(v) for k, v in generate(BASE, bundle).items()}
    second = {k: encode(v) for k, v in generate(BASE, bundle).items()}
    assert first == second and list(first) == ["init", "controlplane", "join"]


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("https://10.5.0.2:6443", "10.5.0.2"),
        ("https://[fd00::1]:6443", "fd00::1"),
        ("https://API.example.org", "API.example.org"),
        ("https://user@host:443/path", "host"),
    ],
)
def test_endpoint_host(endpoint: str, host: str) -> None:
    assert endpoint_host(endpoint) == host


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"endpoint": "http://1.2.3.4:6443"},
            "endpoint http://1.2.3.4:6443: must be a URL with the https scheme",
        ),
        (
            {"endpoint": "https://::1:6443"},
            "endpoint https://::1:6443: an IPv6 address must be in brackets",
        ),
        ({"cluster_name": ""}, "cluster name must not be empty"),
        (
            {"talos_version": "v0.7"},
            "unsupported Talos version contract 'v0.7' (supported: '', 'v0.8', 'v0.9')",
        ),
        ({"dns_domain": "bad domain"}, "DNS domain 'bad domain' is not a valid DNS name"),
        (
            {"registry_mirrors": {"docker.io": []}},
            "a registry mirror needs a host and a URL (host=url)",
        ),
    ],
)
def test_bad_input(change: dict[str, object], message: str, bundle: SecretsBundle) -> None:
    args = {"cluster_name": "demo", "endpoint": "https://10.5.0.2:6443", **change}
    with pytest.raises(UsageError) as info:
        generate(GenerateInput(**args), bundle)  # type: ignore[arg-type]
    assert info.value.message == message
    if "endpoint" in change:
        assert info.value.hint == "try: https://host:6443"
