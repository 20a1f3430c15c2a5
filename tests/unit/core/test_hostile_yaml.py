"""Hostile YAML through every entry point that parses YAML: a clean refusal, in bounded time and
memory, never a traceback or a hang.

Each (document, entry point) pair runs in a child forked from one worker process (started once
for this module, with every entry point imported). The child caps its address space
(``RLIMIT_AS``) and its run time (``SIGALRM`` with the default action kills it), resets its peak
RSS (``/proc/self/clear_refs``), calls the entry point and reports the outcome, the time taken and
the growth of its peak RSS over what it had before the call. The pytest process itself never
parses a hostile document.

``talos-apply apply-config --file`` is not here: it checks that the file is UTF-8 text and sends
it as read; the node parses it (``tests/node/test_hostile_api.py``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TIME_BUDGET = 5.0  # seconds per call
MEMORY_BUDGET = 200  # MiB of peak RSS growth per call
HARD_TIME_LIMIT = 60  # seconds: the child is killed (SIGALRM) past this, reported as a hang
HARD_MEMORY_LIMIT = 1 << 30  # bytes of address space a child may add before allocation fails
OUTPUT_LIMIT = 8000  # characters of a child's stdout/stderr kept for the report

ENDPOINT = "https://10.5.0.2:6443"

# ----------------------------------------------------------------------------------- corpus


def _levels(make: Callable[[int, str, str], str], depth: int = 9) -> str:
    lines = [make(0, "l0", "")]
    lines += [make(i, f"l{i}", f"l{i - 1}") for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def _bomb_lists() -> str:
    return _levels(
        lambda i, cur, prev: (
            f"{cur}: &{cur} [" + ", ".join(["lol"] * 10 if not prev else [f"*{prev}"] * 10) + "]"
        )
    )


def _bomb_maps() -> str:
    return _levels(
        lambda i, cur, prev: (
            f"{cur}: &{cur} {{"
            + ", ".join(f"k{j}: {'lol' if not prev else '*' + prev}" for j in range(10))
            + "}"
        )
    )


def _bomb_merge() -> str:
    def level(i: int, cur: str, prev: str) -> str:
        if not prev:
            return f"{cur}: &{cur} {{" + ", ".join(f"k{j}: lol" for j in range(10)) + "}"
        return f"{cur}: &{cur} {{<<: *{prev}, v{i}: [" + ", ".join([f"*{prev}"] * 10) + "]}"

    return _levels(level)


def _bomb_keys() -> str:
    """Anchors defined and used only in keys (complex keys), each key ten times the last."""

    def level(i: int, cur: str, prev: str) -> str:
        items = ["lol"] * 10 if not prev else [f"*{prev}"] * 10
        return f"? &{cur} [{', '.join(items)}]\n: {i}"

    return _levels(level)


# name -> (text, what to expect). "refuse": the entry point must refuse it, with a message that
# names the file and a line and matches the pattern. "bounded": a huge but legal document; an
# entry point may accept it or refuse it (then naming the file), within the budgets either way.
HOSTILE: dict[str, tuple[Callable[[], str], str, str]] = {
    "alias-bomb-lists": (_bomb_lists, "refuse", r"alias"),
    "alias-bomb-maps": (_bomb_maps, "refuse", r"alias"),
    "alias-bomb-merge": (_bomb_merge, "refuse", r"alias|merge keys"),
    "alias-bomb-keys": (_bomb_keys, "refuse", r"alias|keys must be strings"),
    "alias-cycle": (lambda: "a: &a [x, *a]\n", "refuse", r"alias"),
    "deep-flow-lists": (lambda: "[" * 10_000 + "]" * 10_000 + "\n", "refuse", r"nest"),
    "deep-flow-maps": (lambda: "{a: " * 10_000 + "}" * 10_000 + "\n", "refuse", r"nest"),
    "deep-block-lists": (lambda: "- " * 10_000 + "x\n", "refuse", r"nest"),
    "duplicate-keys": (lambda: "a: 1\nb: 2\na: 3\n", "refuse", r"duplicate key"),
    "huge-scalar": (lambda: "data: " + "a" * (4 << 20) + "\n", "bounded", ""),
    "many-keys": (lambda: "".join(f"k{i}: {i}\n" for i in range(200_000)), "bounded", ""),
}

# ------------------------------------------------------------------------------ entry points
# Each takes the corpus file and a scratch directory, puts the file where the entry point reads
# it, and returns the path it was given (which a refusal must name) and a callable; that returns
# None (library: accepted) or an exit code (CLI), and raises the project's errors on refusal.

Call = Callable[[], "int | None"]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _config_loader(src: Path, work: Path) -> tuple[list[Path], Call]:
    from libtalos.config.loader import load

    return [src], lambda: (load(_text(src), str(src)), None)[1]


def _secrets(src: Path, work: Path) -> tuple[list[Path], Call]:
    from libtalos.secrets import load_bundle

    return [src], lambda: (load_bundle(_text(src), str(src)), None)[1]


def _talosconfig(src: Path, work: Path) -> tuple[list[Path], Call]:
    from libtalos import talosconfig

    return [src], lambda: (talosconfig.load(src), None)[1]


def _kubemerge(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_apply import kubemerge

    return [src], lambda: (kubemerge.parse(_text(src), str(src)), None)[1]


def _patch(src: Path, work: Path) -> tuple[list[Path], Call]:
    from libtalos.patch import read_patch

    return [src], lambda: (read_patch(f"@{src}"), None)[1]


def _services(src: Path, work: Path) -> tuple[list[Path], Call]:
    from libtalos.errors import DocumentError
    from talos_init.services import load_services_dir

    directory = work / "services"
    directory.mkdir()
    path = directory / src.name
    shutil.copyfile(src, path)

    def call() -> None:
        _, problems = load_services_dir(directory)
        if problems:
            raise DocumentError(problems)

    return [path], call


def _cluster_record(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_cluster import state

    directory = work / "cluster"
    directory.mkdir()
    path = directory / state.STATE_FILE
    shutil.copyfile(src, path)
    return [path], lambda: (state.load(directory), None)[1]


def _init_config(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_init import configsource

    return [src], lambda: (configsource.parse(_text(src), str(src)), None)[1]


def _luks_config(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_luks.config import read_encryption

    return [src], lambda: (read_encryption(_text(src), str(src), "STATE"), None)[1]


def _vip_config(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_vip.config import vips_from_config

    return [src], lambda: (vips_from_config(_text(src), str(src)), None)[1]


def _pki_find(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_pki.common import find_certificates

    return [src], lambda: (find_certificates(_text(src), str(src)), None)[1]


def _pki_cert_key(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_pki.common import load_cert_key

    return [src], lambda: (load_cert_key(_text(src), str(src), bundle_entry="os"), None)[1]


def _gen_validate(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_gen.cli import main

    return [src], lambda: main(["validate", "--mode", "container", "--config", str(src)])


def _gen_config(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_gen.cli import main

    out = work / "out"
    return [src], lambda: main(
        ["config", "demo", ENDPOINT, "--with-secrets", str(src), "-o", str(out)]
    )


def _gen_patch_input(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_gen.cli import main

    patch = '{"machine": {"env": {"A": "1"}}}'
    out = work / "patched.yaml"
    return [src], lambda: main(["patch", "--patch", patch, str(src), "-o", str(out)])


def _gen_patch_file(src: Path, work: Path) -> tuple[list[Path], Call]:
    from talos_gen.cli import main

    config = src.parent / "good-machine-config.yaml"
    out = work / "patched.yaml"
    # a patch that is read but does not fit is reported on the patched config
    return [src, config], lambda: main(["patch", "--patch", f"@{src}", str(config), "-o", str(out)])


_MODULES = [
    "libtalos.config.loader",
    "libtalos.patch",
    "libtalos.secrets",
    "libtalos.talosconfig",
    "talos_apply.kubemerge",
    "talos_cluster.state",
    "talos_gen.cli",
    "talos_init.configsource",
    "talos_init.services",
    "talos_luks.config",
    "talos_pki.common",
    "talos_vip.config",
]

# entry point -> (setup, the ordinary document with aliases it must still load)
ENTRY_POINTS: dict[str, tuple[Callable[[Path, Path], tuple[list[Path], Call]], str]] = {
    "libtalos.config.loader.load": (_config_loader, "good-machine-config.yaml"),
    "libtalos.secrets.load_bundle": (_secrets, "good-secrets.yaml"),
    "libtalos.talosconfig.load": (_talosconfig, "good-talosconfig"),
    "talos_apply.kubemerge.parse": (_kubemerge, "good-kubeconfig"),
    "libtalos.patch.read_patch": (_patch, "good-patch.yaml"),
    "talos-init --services-dir": (_services, "good-service.yaml"),
    "talos-cluster record": (_cluster_record, "good-cluster.yaml"),
    "talos-init --config (configsource.parse)": (_init_config, "good-machine-config.yaml"),
    "talos-luks machine config": (_luks_config, "good-machine-config.yaml"),
    "talos-vip machine config": (_vip_config, "good-machine-config.yaml"),
    "talos-pki find_certificates": (_pki_find, "good-secrets.yaml"),
    "talos-pki load_cert_key": (_pki_cert_key, "good-secrets.yaml"),
    "talos-gen validate --config": (_gen_validate, "good-machine-config.yaml"),
    "talos-gen config --with-secrets": (_gen_config, "good-secrets.yaml"),
    "talos-gen patch FILE": (_gen_patch_input, "good-machine-config.yaml"),
    "talos-gen patch --patch @FILE": (_gen_patch_file, "good-patch.yaml"),
}

# --------------------------------------------------------------------- ordinary documents


def _dump_with_aliases(data: Any) -> str:
    """YAML of ``data``; objects it holds twice become an anchor and its aliases."""
    import yaml

    text: str = yaml.safe_dump(data, sort_keys=False)
    assert "&id001" in text and "*id001" in text, "the control document must use aliases"
    return text


def write_good_documents(directory: Path) -> None:
    """One ordinary document per kind, each with an anchor used again through an alias."""
    import yaml
    from talos_cluster import state

    from libtalos import pki, talosconfig

    bundle = pki.generate_secrets()
    data = yaml.safe_load(bundle.to_yaml())
    data["certs"]["k8saggregator"] = data["certs"]["k8s"]  # one CA in two places
    (directory / "good-secrets.yaml").write_text(_dump_with_aliases(data))

    from talos_gen.cli import main

    secrets = directory / "plain-secrets.yaml"
    secrets.write_text(bundle.to_yaml())
    out = directory / "generated"
    assert main(["config", "demo", ENDPOINT, "--with-secrets", str(secrets), "-o", str(out)]) == 0
    config = yaml.safe_load((out / "join.yaml").read_text())
    sans = ["lb.example.org", "10.5.0.9"]
    config["machine"]["certSANs"] = sans
    config["cluster"].setdefault("apiServer", {})["certSANs"] = sans
    (directory / "good-machine-config.yaml").write_text(_dump_with_aliases(config))

    client = yaml.safe_load((out / "talosconfig").read_text())
    ctx = client["contexts"]["demo"]
    ctx["nodes"] = ctx["endpoints"]
    (directory / "good-talosconfig").write_text(_dump_with_aliases(client))
    talosconfig.loads((directory / "good-talosconfig").read_text())  # the shape is right

    user = {"client-certificate-data": "Y2VydA==", "client-key-data": "a2V5"}
    kube = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "demo", "cluster": {"server": ENDPOINT}}],
        "users": [{"name": "admin@demo", "user": user}, {"name": "backup@demo", "user": user}],
        "contexts": [{"name": "admin@demo", "context": {"cluster": "demo", "user": "admin@demo"}}],
        "current-context": "admin@demo",
    }
    (directory / "good-kubeconfig").write_text(_dump_with_aliases(kube))

    (directory / "good-patch.yaml").write_text(
        "machine:\n  certSANs: &sans [lb.example.org]\ncluster:\n  apiServer:\n"
        "    certSANs: *sans\n"
    )
    (directory / "good-service.yaml").write_text(
        "name: web\ncommand: &cmd /bin/sleep\nargs: ['60']\npreStart: [*cmd, '0']\n"
    )

    record = state.ClusterRecord("demo", "10.5.0.0/24", "/nonexistent/demo", "talos-demo")
    data = {"apiVersion": state.API_VERSION, "kind": state.KIND, **record.__dict__}
    shared = ["talos-demo"]
    data["namespaces"] = shared
    data["cgroup_roots"] = shared
    (directory / "good-cluster.yaml").write_text(_dump_with_aliases(data))


# ---------------------------------------------------------------------------------- worker


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _child(entry: str, src: Path, work: Path, out_fd: int, result_fd: int) -> None:
    """Runs in the forked child: one call, measured; writes a JSON result and exits."""
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    from libtalos.errors import TalosError

    setup, _ = ENTRY_POINTS[entry]
    shown, call = setup(src, work)
    result: dict[str, Any] = {"shown": [str(p) for p in shown]}
    limit = _status("VmSize") * 1024 + HARD_MEMORY_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    before = _status("VmRSS")
    signal.alarm(HARD_TIME_LIMIT)
    start = time.monotonic()
    try:
        code = call()
        result["outcome"] = "accepted" if not code else "refused"
        result["exit"] = code
        result["message"] = ""
    except TalosError as exc:
        result.update(outcome="refused", type=type(exc).__name__, message=str(exc))
        result["exit"] = int(exc.exit_code)
    except BaseException:  # noqa: BLE001 - anything else is the crash this test reports
        result.update(outcome="crash", message=traceback.format_exc(limit=-8))
    result["seconds"] = time.monotonic() - start
    signal.alarm(0)
    result["peak_mib"] = (_status("VmHWM") - before) / 1024
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(result_fd, json.dumps(result).encode())
    os._exit(0)


def _run_job(entry: str, src: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True)
    out_path = work / "output"
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read_end)
            _child(entry, src, work, out_fd, write_end)
        finally:
            os._exit(70)
    os.close(write_end)
    os.close(out_fd)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    output = out_path.read_text(errors="replace")[:OUTPUT_LIMIT]
    if chunks:
        result: dict[str, Any] = json.loads(b"".join(chunks))
    elif os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        what = "hang" if sig == "SIGALRM" else "killed"
        result = {"outcome": what, "message": f"child died of {sig}"}
    else:
        result = {"outcome": "crash", "message": f"child exited {os.WEXITSTATUS(status)}"}
    result["output"] = output
    return result


def worker() -> None:
    """Import every entry point, then run one job per line of stdin: ``entry\\tfile\\tdir``."""
    for module in _MODULES:
        importlib.import_module(module)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        entry, src, work = line.rstrip("\n").split("\t")
        sys.stdout.write(json.dumps(_run_job(entry, Path(src), Path(work))) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------- tests


class Worker:
    def __init__(self, proc: subprocess.Popen[str], corpus: Path, scratch: Path) -> None:
        self.proc = proc
        self.corpus = corpus
        self.scratch = scratch
        self.runs = 0

    def run(self, entry: str, document: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.runs += 1
        work = self.scratch / f"job{self.runs}"
        self.proc.stdin.write(f"{entry}\t{self.corpus / document}\t{work}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the worker died (exit {self.proc.poll()})"
        result: dict[str, Any] = json.loads(line)
        return result


@pytest.fixture(scope="module")
def hostile_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("/proc/self/clear_refs is missing: cannot measure a call's peak memory")
    corpus = tmp_path_factory.mktemp("corpus")
    for name, (make, _, _) in HOSTILE.items():
        (corpus / f"{name}.yaml").write_text(make())
    write_good_documents(corpus)
    proc = subprocess.Popen(
        [sys.executable, __file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        yield Worker(proc, corpus, tmp_path_factory.mktemp("jobs"))
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def _report(result: dict[str, Any]) -> str:
    return (
        f"outcome {result['outcome']}, exit {result.get('exit')}, "
        f"{result.get('seconds', 0):.2f} s, {result.get('peak_mib', 0):.0f} MiB\n"
        f"message: {result['message']}\noutput: {result['output']}"
    )


def _names_a_line(text: str, shown: list[str]) -> bool:
    files = "|".join(re.escape(p) for p in shown)
    return bool(re.search(rf"({files}):\d+|line \d+", text))


# Known gaps: (document, entry point) -> why it does not hold yet.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def _cases() -> list[Any]:
    cases = []
    for name, (_, expect, _) in HOSTILE.items():
        for entry in ENTRY_POINTS:
            gap = KNOWN_GAPS.get((name, entry))
            marks = [pytest.mark.xfail(reason=gap, strict=True)] if gap else []
            cases.append(pytest.param(name, entry, id=f"{name}-{expect}-{entry}", marks=marks))
    return cases


@pytest.mark.parametrize(("document", "entry"), _cases())
def test_hostile_document_is_refused_cleanly_in_bounded_time_and_memory(
    hostile_worker: Worker, document: str, entry: str
) -> None:
    _, expect, pattern = HOSTILE[document]
    result = hostile_worker.run(entry, f"{document}.yaml")
    report = _report(result)
    assert result["outcome"] in ("accepted", "refused"), report
    assert "Traceback" not in result["output"], report
    assert result["seconds"] < TIME_BUDGET, report
    assert result["peak_mib"] < MEMORY_BUDGET, report
    text = result["message"] or result["output"]
    if expect == "refuse":
        assert result["outcome"] == "refused", report
    if result["outcome"] == "refused":
        assert result["exit"] == 1, report  # ExitCode.FAILURE: bad input data
        assert any(p in text for p in result["shown"]), report
    if expect == "refuse":
        assert _names_a_line(text, result["shown"]), report
        assert re.search(pattern, text), report


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_ordinary_document_with_aliases_still_loads(hostile_worker: Worker, entry: str) -> None:
    """Negative control: the bounds leave ordinary documents, aliases included, alone."""
    _, good = ENTRY_POINTS[entry]
    result = hostile_worker.run(entry, good)
    report = _report(result)
    assert result["outcome"] == "accepted", report
    assert "Traceback" not in result["output"], report


def test_the_measurement_sees_a_large_allocation(hostile_worker: Worker, tmp_path: Path) -> None:
    """Negative control for the memory budget: a call that allocates is measured as such."""
    result = hostile_worker.run("measure-control", "good-patch.yaml")
    assert result["outcome"] == "accepted", _report(result)
    assert result["peak_mib"] >= 250, _report(result)


def _allocate(src: Path, work: Path) -> tuple[list[Path], Call]:
    def call() -> None:
        block = b"x" * (300 << 20)  # written: every page is resident
        del block

    return [src], call


ENTRY_POINTS_FOR_CONTROLS = {"measure-control": (_allocate, "good-patch.yaml")}


if __name__ == "__main__":
    ENTRY_POINTS.update(ENTRY_POINTS_FOR_CONTROLS)
    worker()


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("clusters: [1]\n", "clusters[0]", "must be a mapping"),
        ("users:\n- name: a\n- oops\n", "users[1]", "must be a mapping"),
        ("contexts: {a: 1}\n", "contexts", "must be a list"),
        ("current-context: [a]\n", "current-context", "must be a string"),
        ("- a\n", "", "not a kubeconfig"),
    ],
)
def test_kubeconfig_of_the_wrong_shape_is_refused_with_its_line(
    text: str, where: str, message: str
) -> None:
    """Shapes that merging would trip over are refused when the kubeconfig is read."""
    from libtalos.errors import ParseError
    from talos_apply import kubemerge

    with pytest.raises(ParseError) as info:
        kubemerge.parse(text, "kc")
    assert re.search(rf"^kc:\d+ document 1: {re.escape(where)}:? ?.*{message}", str(info.value))
    good = "clusters: []\nusers: null\ncurrent-context: a\n"
    assert kubemerge.parse(good, "kc")["current-context"] == "a"
    assert kubemerge.parse("", "kc") == {}
