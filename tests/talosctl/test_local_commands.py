"""talosctl commands that need no node: images, aliases, version --client --short, completion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from libtalos.config import v1alpha1
from talosctl.cli import ROUTES, main, resolve
from talosctl.completion import next_words, script


@pytest.fixture
def talosctl(capsys: pytest.CaptureFixture[str]):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_images_lists_talos_093_defaults_in_talosctl_order(talosctl: Any):
    code, out, err = talosctl("images")
    assert (code, err) == (0, "")
    k8s = v1alpha1.DEFAULT_KUBERNETES_VERSION
    assert out.splitlines() == [
        "quay.io/coreos/flannel:v0.13.0",
        "ghcr.io/talos-systems/install-cni:v0.2.0-1-g0db3328",
        "docker.io/coredns/coredns:1.8.0",
        "gcr.io/etcd-development/etcd:v3.4.15",
        f"k8s.gcr.io/kube-apiserver:v{k8s}",
        f"k8s.gcr.io/kube-controller-manager:v{k8s}",
        f"k8s.gcr.io/kube-scheduler:v{k8s}",
        f"k8s.gcr.io/kube-proxy:v{k8s}",
        f"ghcr.io/talos-systems/kubelet:v{k8s}",
        "ghcr.io/talos-systems/installer:v0.9.3",
        "k8s.gcr.io/pause:3.2",
    ]
    assert k8s == "1.20.6"  # Talos v0.9.3's default


def test_images_follow_the_config_models_defaults(talosctl: Any, monkeypatch: pytest.MonkeyPatch):
    """Derived, not copied: a different default Kubernetes version changes the list."""
    monkeypatch.setattr(v1alpha1, "kubernetes_image", lambda c, v="9.9.9": f"r/{c}:v{v}")
    out = talosctl("images")[1]
    assert "r/kube-apiserver:v9.9.9" in out.splitlines()


@pytest.mark.parametrize(
    ("words", "tool_words"),
    [
        (["m"], ["memory"]),
        (["free", "-v"], ["memory", "-v"]),
        (["memory"], ["memory"]),
        (["p", "--sort", "cpu"], ["processes", "--sort", "cpu"]),
        (["ps"], ["processes"]),
        (["apply", "-f", "c.yaml"], ["apply-config", "-f", "c.yaml"]),
        (["gen", "ca", "--organization", "o"], ["gen", "ca", "--organization", "o"]),
        (["gen", "keypair", "--organization", "o"], ["gen", "keypair", "--organization", "o"]),
        (["images"], ["images"]),
    ],
)
def test_aliases_route_to_the_command(words: list[str], tool_words: list[str]):
    found = resolve(words)
    assert found is not None
    assert found[1] == tool_words


def test_unknown_alias_is_refused(talosctl: Any):
    code, _, err = talosctl("mem")
    assert code == 2 and "unknown command 'mem'" in err


def test_version_client_short_prints_one_line(talosctl: Any):
    from talos_apply import __version__

    code, out, _ = talosctl("version", "--client", "--short")
    assert code == 0
    assert out == f"Client:\nClient {__version__}\n"
    code, out, _ = talosctl("version", "--client")
    assert code == 0 and "\tTag:" in out  # the long form, for contrast


# ----------------------------------------------------------------------------- completion


def bash_complete(script_path: Path, line: str) -> list[str]:
    """What bash completes for ``line`` (a trailing space: a new, empty word)."""
    program = (
        f'source "{script_path}"\n'
        'read -ra COMP_WORDS <<< "$LINE"\n'
        '[[ "$LINE" == *" " ]] && COMP_WORDS+=("")\n'
        "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
        "__talosctl_complete\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    res = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, "LINE": line},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return [w for w in res.stdout.splitlines() if w]


@pytest.fixture
def bash_script(tmp_path: Path, talosctl: Any) -> Path:
    code, out, _ = talosctl("completion", "bash")
    assert code == 0
    path = tmp_path / "talosctl.bash"
    path.write_text(out)
    return path


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("talosctl ge", ["gen"]),
        ("talosctl gen c", ["ca", "config", "crt", "csr"]),
        ("talosctl gen k", ["key", "keypair"]),
        ("talosctl -n 10.5.0.2 --talosconfig ./tc gen cr", ["crt"]),
        ("talosctl --talosconfig=./tc cluster ", ["create", "destroy", "show"]),
        ("talosctl proc", ["processes"]),
        ("talosctl gen ca ", []),  # a whole command: file names (-o default), not words
        ("talosctl nosuch ", []),
    ],
)
def test_bash_completion_of_command_words(bash_script: Path, line: str, expected: list[str]):
    assert bash_complete(bash_script, line) == expected


def test_completion_comes_from_the_routing_table(monkeypatch: pytest.MonkeyPatch):
    """A new route completes without completion code of its own."""
    from talosctl import cli

    extra = cli.Route(("gen", "cow"), "talos_pki.cli", ("cow",), "moo")
    monkeypatch.setattr(cli, "ROUTES", (*ROUTES, extra))
    assert "ca config cow crt" in script("bash")
    assert next_words(cli.ROUTES)["gen"][:3] == ["ca", "config", "cow"]


def test_zsh_script_is_valid_zsh(talosctl: Any, tmp_path: Path):
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (Debian package zsh): cannot syntax-check the script")
    code, out, _ = talosctl("completion", "zsh")
    assert code == 0 and out.startswith("#compdef talosctl\n")
    path = tmp_path / "_talosctl"
    path.write_text(out)
    check = subprocess.run([zsh, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    # Its candidates, with compadd and _files stood in for (they exist only inside zle).
    program = (
        "compdef() { :; }; compadd() { shift; print -r -- $@; }; _files() { print FILES; }\n"
        f"source {path}\n"
        "words=(talosctl gen c); CURRENT=3; _talosctl\n"
        "words=(talosctl gen ca ''); CURRENT=4; _talosctl\n"
    )
    res = subprocess.run([zsh, "-f", "-c", program], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["ca config crt csr key keypair secrets", "FILES"]


def test_fish_script_completes(talosctl: Any, tmp_path: Path):
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed (Debian package fish): cannot check the script")
    code, out, _ = talosctl("completion", "fish")
    assert code == 0
    path = tmp_path / "talosctl.fish"
    path.write_text(out)
    check = subprocess.run([fish, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    res = subprocess.run(
        [fish, "--no-config", "-c", f"source {path}; complete -C 'talosctl gen c'"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["ca", "config", "crt", "csr"]


def test_completion_needs_a_known_shell(talosctl: Any):
    code, out, err = talosctl("completion")
    assert (code, out) == (2, "") and "SHELL" in err
    code, out, err = talosctl("completion", "tcsh")
    assert (code, out) == (2, "") and "'tcsh'" in err


def test_each_tools_own_completion_answers_through_typer(run_script: Any):
    """talos-pki's `completion bash` script asks talos-pki itself, which Typer answers."""
    res = run_script("talos-pki", "completion", "bash")
    assert res.returncode == 0, res.stderr
    assert "_TALOS_PKI_COMPLETE=complete_bash" in res.stdout
    env = {
        **os.environ,
        "_TALOS_PKI_COMPLETE": "complete_bash",
        "COMP_WORDS": "talos-pki gen k",
        "COMP_CWORD": "2",
    }
    tool = str(Path(sys.executable).parent / "talos-pki")  # the console script run_script ran
    answer = subprocess.run([tool], capture_output=True, text=True, env=env, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["key", "keypair"]
    env["COMP_WORDS"], env["COMP_CWORD"] = "talos-pki gen ca --", "3"
    answer = subprocess.run([tool], capture_output=True, text=True, env=env, timeout=60)
    assert {"--organization", "--hours", "--rsa"} <= set(answer.stdout.split())
