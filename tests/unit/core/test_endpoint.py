"""libtalos.endpoint: the one parser of endpoints (addresses and URLs), and its callers' rules."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from libtalos import endpoint as ep
from libtalos.config.validate import check_endpoint
from libtalos.errors import ExitCode, UsageError

# -- addresses: -e/--endpoints, the talosconfig's endpoints -------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("10.5.0.2", "10.5.0.2", None),
        ("10.5.0.2:50000", "10.5.0.2", 50000),
        ("node-1.example.org", "node-1.example.org", None),
        ("API.Example.org:1", "API.Example.org", 1),
        ("localhost:65535", "localhost", 65535),
        ("[fd00::1]:50000", "fd00::1", 50000),
        ("[fd00::1]", "fd00::1", None),
        ("fd00::1", "fd00::1", None),  # a bare IPv6 address, as talosctl takes it
        ("::1", "::1", None),
        ("a" * 63 + ".b", "a" * 63 + ".b", None),
    ],
)
def test_address_accepted(value: str, host: str, port: int | None) -> None:
    parsed = ep.parse_address(value)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.path) == ("", host, port, "")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://1.2.3.4", "must be host or host:port, without a scheme"),
        ("https://1.2.3.4:50000", "must be host or host:port, without a scheme"),
        ("x:y:z", "has more than one ':' (host:port, or [v6]:port for IPv6)"),
        ("1.2.3.4:5:6", "has more than one ':' (host:port, or [v6]:port for IPv6)"),
        ("127.0.0.1:99999", "port 99999 is out of range (1-65535)"),
        ("127.0.0.1:0", "port 0 is out of range (1-65535)"),
        ("host:", "has an empty port"),
        ("host:+1", "port '+1' is not a number"),
        ("host:٣", "contains a control or non-ASCII character (at position 6)"),
        (":50000", "has no host"),
        ("", "is empty"),
        ("a b", "contains whitespace (at position 2)"),
        ("a\nb", "contains whitespace (at position 2)"),
        ("a\x00b", "contains a control or non-ASCII character (at position 2)"),
        ("1.2.3.999", "host '1.2.3.999' is not a valid IPv4 address"),
        ("10.5", "host '10.5' is not a valid IPv4 address"),
        ("[1.2.3.4]:5", "brackets are only for IPv6 addresses"),
        ("[::1", "has '[' without a closing ']'"),
        ("::1]:5", "has ']' without an opening '['"),
        ("[::1]x", "unexpected 'x' after ']'"),
        ("[::g]:5", "host '::g' is not a valid IPv6 address"),
        ("host/path", "must be host or host:port (no path, user or query)"),
        ("user@host", "must be host or host:port (no path, user or query)"),
    ],
)
def test_address_refused_with_reason(value: str, reason: str) -> None:
    with pytest.raises(ep.EndpointError) as info:
        ep.parse_address(value, what="--endpoints")
    assert info.value.reason == reason
    assert str(info.value) == f"--endpoints {value!r}: {reason}"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("-a", "is not a valid DNS name"),
        ("a-", "is not a valid DNS name"),
        ("a_b", "is not a valid DNS name"),
        ("a..b", "is not a valid DNS name"),
        ("a.", "is not a valid DNS name"),
        ("a" * 64, "is not a valid DNS name"),
        (".".join(["a" * 63] * 4), "host is longer than 253 characters"),
    ],
)
def test_dns_names_follow_rfc_1123(host: str, reason: str) -> None:
    with pytest.raises(ep.EndpointError, match=reason):
        ep.parse_address(host)
    with pytest.raises(ep.EndpointError, match=reason):
        ep.parse_address(f"{host}:50000")


def test_error_is_a_usage_error_and_a_value_error() -> None:
    with pytest.raises(ValueError, match="port 99999") as info:
        ep.parse_address("1.2.3.4:99999")
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("size", [5000, 70_000, 10_000_000])
def test_huge_input_is_refused_quickly_and_shown_shortened(size: int) -> None:
    value = "a" * size
    start = time.monotonic()
    with pytest.raises(ep.EndpointError) as info:
        ep.parse_address(value, what="-e")
    assert time.monotonic() - start < 5
    assert info.value.reason == "is longer than 1024 characters"
    assert len(str(info.value)) < 200
    assert f"({size} characters)" in str(info.value)


def test_long_host_within_the_length_bound() -> None:
    host = ".".join(["a" * 60] * 5)  # 304 characters: too long for DNS, short for MAX_LENGTH
    with pytest.raises(ep.EndpointError, match="host is longer than 253 characters"):
        ep.parse_address(host)
    assert ep.parse_address(host[:253].rstrip(".")).host == host[:253].rstrip(".")


def test_endpoint_value_rendering() -> None:
    assert ep.parse_address("fd00::1").hostport(50000) == "[fd00::1]:50000"
    assert ep.parse_address("10.5.0.2").hostport(50000) == "10.5.0.2:50000"
    assert ep.parse_address("10.5.0.2:1").hostport(50000) == "10.5.0.2:1"
    assert str(ep.parse_address("[fd00::1]:5")) == "[fd00::1]:5"
    assert ep.parse_address("h:1") == ep.Endpoint("h", 1)
    assert ep.parse_address("h:1") != ep.Endpoint("h", 2)
    with pytest.raises(AttributeError):
        ep.parse_address("h").port = 2  # type: ignore[misc]


# -- URLs: the cluster endpoint ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://10.5.0.2:6443", ep.Endpoint("10.5.0.2", 6443, "https")),
        ("https://[fd00::1]:6443", ep.Endpoint("fd00::1", 6443, "https")),
        ("https://api.example.org", ep.Endpoint("api.example.org", None, "https")),
        ("HTTPS://h:443/path", ep.Endpoint("h", 443, "https", "/path")),
    ],
)
def test_url_accepted(value: str, expected: ep.Endpoint) -> None:
    assert ep.parse_url(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://10.5.0.2:6443", "must be a URL with the https scheme"),
        ("10.5.0.2:6443", "must be a URL with the https scheme"),
        ("https://a b:6443", "contains whitespace (at position 10)"),
        ("https://a\nb:6443", "contains whitespace (at position 10)"),
        ("https://x:y:z", "has more than one ':' (host:port, or [v6]:port for IPv6)"),
        ("https://fd00::1:6443", "an IPv6 address must be in brackets"),
        ("https://[::1", "has '[' without a closing ']'"),
        ("https://h:99999", "port 99999 is out of range (1-65535)"),
        ("https://h?x=1", "must not have a query or fragment"),
        ("https://a_b:6443", "is not a valid DNS name"),
    ],
)
def test_url_refused_with_reason(value: str, reason: str) -> None:
    with pytest.raises(ep.EndpointError) as info:
        ep.parse_url(value, what="ENDPOINT")
    assert reason in info.value.reason
    assert str(info.value).startswith(f"ENDPOINT {value!r}: ")


def test_url_user_information_is_refused_and_masked() -> None:
    with pytest.raises(ep.EndpointError) as info:
        ep.parse_url("https://admin:s3cret@h:6443")
    assert info.value.reason == "must not contain user information"
    assert "s3cret" not in str(info.value) and "'https://***@h:6443'" in str(info.value)


def test_url_schemes_are_the_callers() -> None:
    assert ep.parse_url("http://h:80", schemes=("http", "https")).scheme == "http"
    with pytest.raises(ep.EndpointError, match="must be a URL with the http or https scheme"):
        ep.parse_url("ftp://h", schemes=("http", "https"))


def test_cluster_endpoint_check_uses_the_parser() -> None:
    hint = "; try: https://host:6443"
    assert check_endpoint("https://a b:6443") == f"contains whitespace (at position 10){hint}"
    assert check_endpoint("https://" + "a" * 70_000 + ":6443") == (
        f"is longer than 1024 characters{hint}"
    )
    assert check_endpoint("https://10.5.0.2:6443") is None  # negative control


# -- talos-gen config NAME ENDPOINT -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("https://a b:6443", "contains whitespace"),
        ("https://a\nb:6443", "contains whitespace"),
        ("https://" + "a" * 70_000 + ":6443", "is longer than 1024 characters"),
    ],
)
def test_talos_gen_refuses_bad_cluster_endpoint(tmp_path, capsys, value: str, reason: str) -> None:
    from talos_gen.cli import main

    out = tmp_path / "out"
    assert main(["config", "demo", value, "-o", str(out)]) == 2  # the fast path
    assert main(["config", "demo", value, "-o", str(out), "--dns-domain", "x.local"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 2
    assert all(line.startswith("error: endpoint 'https://") and reason in line for line in lines)
    assert not out.exists()


# -- talos-init --config URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://[::1", "not a valid URL"),
        ("http://[::1]:99999/c", "not a valid URL: has an invalid port"),
        ("http://a b/c", "not a valid URL: host 'a b' is not a valid DNS name"),
        ("http://x:y:z/c", "not a valid URL: has an invalid port"),
        ("http:///c", "not a valid URL: has no host"),
        ("http://" + "a" * 5000 + "/c", "not a valid URL: host is longer than 253"),
    ],
)
def test_config_url_errors_are_fetch_errors(url: str, reason: str) -> None:
    from talos_init import configsource

    assert configsource.expand_url(url, "U-1") == url  # unchanged, no exception
    with pytest.raises(configsource.ConfigFetchError, match=reason.replace("[", r"\[")):
        configsource.fetch(url, timeout=1)


def _load_config(tmp_path, url: str) -> tuple[object, list[str]]:
    from talos_init.logring import Console
    from talos_init.node import Node, NodeOptions

    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        console = Console(fd)
        options = NodeOptions("container", tmp_path, config_source=url, fetch_timeout=1)
        node = Node(options, console, frozenset())
        node.state.mkdir(parents=True)
        asyncio.run(node._load_config())
    finally:
        os.close(fd)
    return node.config, console.ring.lines()


def test_bad_config_url_falls_back_to_maintenance_mode(tmp_path) -> None:
    config, lines = _load_config(tmp_path, "https://[::1")
    assert config is None
    assert any("config: https://[::1: not a valid URL" in line for line in lines)
    assert lines[-1].endswith("no config: entering maintenance mode")


def test_good_config_url_is_loaded(tmp_path) -> None:
    """Negative control of the fallback: a good file:// URL gives a config."""
    from libtalos.config import GenerateInput, encode, generate
    from libtalos.pki import generate_secrets

    configs = generate(GenerateInput("demo", "https://10.5.0.2:6443"), generate_secrets())
    good = tmp_path / "c.yaml"
    good.write_text(encode(configs["init"], comments=False))
    config, lines = _load_config(tmp_path / "node", f"file://{good}")
    assert config is not None
    assert any(line.endswith(f"config loaded from file://{good}") for line in lines)
