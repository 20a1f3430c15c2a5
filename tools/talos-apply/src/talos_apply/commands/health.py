"""``health``: is the cluster healthy, node by node, as seen over the machine API.

Checks, retried until they all pass or ``--wait-timeout`` runs out (Talos's default: 20 minutes):

- ``api``: the node answers (a ``ServiceList`` through the endpoint reaches it);
- ``services``: every service it reports is Running (and not failing its health check), Finished
  or Skipped (a skipped service, e.g. kubelet without a kubelet binary, carries its reason and is
  not a failure); a control-plane node must report etcd;
- ``etcd``: etcd runs healthy on the control-plane node and lists its members;
- ``etcd members``: every control-plane node lists the same members, one started voting member
  per control-plane node.

The control-plane nodes are ``--control-plane-nodes``, else ``--nodes``, else the context's
endpoints (which ``gen config`` and ``cluster create`` set to the control-plane addresses);
workers are ``--worker-nodes``. The calls go through the endpoints with the ``nodes`` metadata,
as every other command; the checks run here, in the client (Talos's ``--server=false``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer

from libtalos import yamlio
from libtalos.errors import NetworkError, TalosError, UsageError
from talos_apply.durations import parse_duration
from talos_apply.options import Globals, OutputFormat, OutputOpt, _split, global_options, globals_of
from talos_apply.output import node_of, table

POLL = 1.0  # seconds between two rounds of checks
ATTEMPT_TIMEOUT = 10.0  # seconds for one call of a round (a hung node must not stall the wait)
CHECKS = ("api", "services", "etcd", "etcd members")
FINE_STATES = frozenset({"Running", "Finished", "Skipped"})
NO_ANSWER = "the node does not answer"


class UnhealthyError(TalosError):
    """At least one check still failed when the wait ran out (each was printed)."""


@dataclass(frozen=True)
class Result:
    node: str
    check: str
    ok: bool
    message: str


@dataclass
class Replies:
    """One round's answers: per node its services and (control planes) its etcd members."""

    services: dict[str, Any]
    members: dict[str, Any]
    errors: dict[tuple[str, str], str]  # (node, call) -> why it has no answer


# ---------------------------------------------------------------------------- the checks


def _peer_hosts(member: Any) -> set[str]:
    from urllib.parse import urlsplit

    hosts = set()
    for url in [*member.peer_urls, *member.client_urls]:
        host = urlsplit(url).hostname
        if host:
            hosts.add(host)
    return hosts


def _host(node: str) -> str:
    from libtalos.api.wire import split_target

    return split_target(node)[0]


def _member_name(member: Any) -> str:
    return member.hostname or f"{member.id:x} (not started)"


def _service_result(node: str, reply: Any, control_plane: bool) -> Result:
    bad, skipped = [], []
    for s in reply.services:
        if s.state == "Skipped":
            last = s.health.last_message or (s.events.events[-1].msg if s.events.events else "")
            if "skipped" in last:  # the reason says it already
                skipped.append(f"{s.id}: {last}")
            else:
                skipped.append(f"{s.id} skipped: {last}" if last else f"{s.id} skipped")
        elif s.state not in FINE_STATES:
            why = s.events.events[-1].msg if s.events.events else ""
            bad.append(f"{s.id} is {s.state}" + (f" ({why})" if why else ""))
        elif not s.health.unknown and not s.health.healthy and s.state == "Running":
            why = s.health.last_message
            bad.append(f"{s.id} is unhealthy" + (f" ({why})" if why else ""))
    if control_plane and all(s.id != "etcd" for s in reply.services):
        bad.append("etcd is not running (not bootstrapped or joined yet)")
    if bad:
        return Result(node, "services", False, "; ".join(bad))
    note = f" ({'; '.join(skipped)})" if skipped else ""
    return Result(node, "services", True, f"{len(reply.services)} reported{note}")


def evaluate(replies: Replies, control_planes: list[str], workers: list[str]) -> list[Result]:
    """Every check for every node, from one round's replies (pure: unit-testable)."""
    results: list[Result] = []
    # the member list most control planes agree on is the reference the others are held to
    lists: dict[tuple[tuple[int, str], ...], list[str]] = {}
    for node in control_planes:
        m = replies.members.get(node)
        if m is not None:
            key = tuple(sorted((mem.id, mem.hostname) for mem in m.members))
            lists.setdefault(key, []).append(node)
    reference = max(lists.items(), key=lambda kv: len(kv[1]))[0] if lists else None
    reference_nodes = lists.get(reference, []) if reference is not None else []

    def member_of(node: str) -> str:
        """The etcd member whose URLs carry this node's address (for messages), when there
        is exactly one such member."""
        names = {
            mem.hostname
            for reply in replies.members.values()
            for mem in reply.members
            if mem.hostname and _host(node) in _peer_hosts(mem)
        }
        return f" (etcd member {names.pop()})" if len(names) == 1 else ""

    for node in [*control_planes, *workers]:
        cp = node in control_planes
        svc = replies.services.get(node)
        if svc is None:
            why = replies.errors.get((node, "services"), "no answer")
            results.append(Result(node, "api", False, f"not answering{member_of(node)}: {why}"))
            for check in ("services", *(("etcd", "etcd members") if cp else ())):
                results.append(Result(node, check, False, NO_ANSWER))
            continue
        results.append(Result(node, "api", True, "answers"))
        results.append(_service_result(node, svc, cp))
        if not cp:
            continue
        mem = replies.members.get(node)
        etcd = next((s for s in svc.services if s.id == "etcd"), None)
        if mem is None:
            why = replies.errors.get((node, "members"), "no answer")
            results.append(Result(node, "etcd", False, f"cannot list members: {why}"))
            results.append(Result(node, "etcd members", False, "no member list from this node"))
            continue
        failing = etcd is not None and not etcd.health.unknown and not etcd.health.healthy
        if etcd is not None and (etcd.state != "Running" or failing):
            why = etcd.health.last_message or etcd.state
            results.append(Result(node, "etcd", False, f"etcd is {etcd.state}: {why}"))
        else:
            results.append(Result(node, "etcd", True, f"healthy, {len(mem.members)} members"))
        results.append(_members_result(node, mem, reference, reference_nodes, control_planes))
    return results


def _members_result(
    node: str,
    reply: Any,
    reference: tuple[tuple[int, str], ...] | None,
    reference_nodes: list[str],
    control_planes: list[str],
) -> Result:
    problems = []
    key = tuple(sorted((mem.id, mem.hostname) for mem in reply.members))
    if reference is not None and key != reference:
        mine = {f"{i:x}" + (f" {n}" if n else "") for i, n in key}
        theirs = {f"{i:x}" + (f" {n}" if n else "") for i, n in reference}
        diff = []
        if mine - theirs:
            diff.append("only here: " + ", ".join(sorted(mine - theirs)))
        if theirs - mine:
            diff.append("missing here: " + ", ".join(sorted(theirs - mine)))
        problems.append(f"differs from {', '.join(reference_nodes)}'s list ({'; '.join(diff)})")
    if len(reply.members) != len(control_planes):
        problems.append(
            f"{len(reply.members)} members for {len(control_planes)} control-plane node"
            f"{'s' if len(control_planes) != 1 else ''}"
        )
    for mem in reply.members:
        if not mem.hostname:
            problems.append(f"member {_member_name(mem)}: added but never started")
        if mem.is_learner:
            problems.append(f"member {_member_name(mem)} is a learner")
    if problems:
        return Result(node, "etcd members", False, "; ".join(problems))
    names = ", ".join(sorted(mem.hostname for mem in reply.members))
    return Result(node, "etcd members", True, f"agree: {names}")


# ---------------------------------------------------------------------------- one round


async def _round(
    g: Globals, control_planes: list[str], workers: list[str], timeout: float
) -> Replies:
    import asyncio

    from google.protobuf import empty_pb2

    from libtalos.api import machine_pb2
    from talos_apply import client

    target = client.secure_target(g, need_nodes=False)
    replies = Replies({}, {}, {})

    async def call(nodes: list[str], method: str, request: Any, what: str) -> dict[str, Any]:
        if not nodes:
            return {}
        t = client.Target(target.endpoints, nodes, target.ssl)
        try:
            messages, errors = await asyncio.wait_for(
                client.Client(t).unary(method, request), timeout
            )
        except TimeoutError:
            for n in nodes:
                replies.errors[(n, what)] = f"no answer within {timeout:g}s"
            return {}
        except client.CallError as exc:  # the endpoint refused the whole call
            for n in nodes:
                replies.errors[(n, what)] = exc.message
            return {}
        except NetworkError as exc:  # no endpoint answered: no node can be asked
            for n in nodes:
                replies.errors[(n, what)] = exc.message
            return {}
        for e in errors:
            replies.errors[(e.node, what)] = e.message
        out = {}
        for m in messages:
            name = node_of(m) or (nodes[0] if len(nodes) == 1 else "")
            if name in nodes:
                out[name] = m
        return out

    everyone = [*control_planes, *(w for w in workers if w not in control_planes)]
    services, members = await asyncio.gather(
        call(everyone, "ServiceList", empty_pb2.Empty(), "services"),
        call(control_planes, "EtcdMemberList", machine_pb2.EtcdMemberListRequest(), "members"),
    )
    replies.services, replies.members = services, members
    return replies


# ---------------------------------------------------------------------------- the command


def _nodes_of(g: Globals, control_plane_nodes: list[str], worker_nodes: list[str]) -> list[str]:
    if control_plane_nodes:
        return control_plane_nodes
    if g.nodes:
        return list(g.nodes)
    from libtalos import talosconfig

    path = talosconfig.default_path(g.talosconfig)
    ctx = talosconfig.load(path).current(g.context)
    found = list(g.endpoints or ctx.endpoints or ctx.nodes)
    found = [n for n in found if n not in worker_nodes]
    if not found:
        raise UsageError(
            "no control-plane nodes: pass --control-plane-nodes (or set the context's endpoints)"
        )
    return found


def _emit(results: list[Result], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    elif fmt is OutputFormat.yaml:
        sys.stdout.write(yamlio.dump([asdict(r) for r in results]))
    else:
        rows = [[r.node, r.check, "OK" if r.ok else "FAIL", r.message] for r in results]
        sys.stdout.write(table(["NODE", "CHECK", "RESULT", "DETAILS"], rows))


@global_options()
def health(
    ctx: typer.Context,
    control_plane_nodes: Annotated[
        list[str] | None,
        typer.Option(
            "--control-plane-nodes",
            help="The control-plane nodes (a,b or repeated); default --nodes, else the "
            "context's endpoints.",
        ),
    ] = None,
    worker_nodes: Annotated[
        list[str] | None,
        typer.Option("--worker-nodes", help="The worker nodes (a,b or repeated)."),
    ] = None,
    wait_timeout: Annotated[
        str,
        typer.Option(
            "--wait-timeout", help="Retry the checks until they pass or this much time passed."
        ),
    ] = "20m",
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Check the cluster's health: nodes answer, services run, etcd members healthy and
    agreeing. Exit 0 when every check passes, 1 when one still fails at --wait-timeout (the
    report names the node and the check), 2 usage."""
    from talos_apply import client

    timeout = parse_duration(wait_timeout, "--wait-timeout").total_seconds()
    g = globals_of(ctx)
    workers = _split(worker_nodes)
    control_planes = _nodes_of(g, _split(control_plane_nodes), workers)
    deadline = time.monotonic() + timeout
    shown: dict[tuple[str, str], str] = {}
    while True:
        left = max(deadline - time.monotonic(), 0.5)
        replies = client.run(_round(g, control_planes, workers, min(ATTEMPT_TIMEOUT, left)))
        results = evaluate(replies, control_planes, workers)
        failed = [r for r in results if not r.ok]
        if not failed or time.monotonic() + POLL >= deadline:
            break
        for r in failed:  # progress: each new reason once (not the checks "api" explains)
            if r.message != NO_ANSWER and shown.get((r.node, r.check)) != r.message:
                shown[(r.node, r.check)] = r.message
                sys.stderr.write(f"waiting: {r.node}: {r.check}: {r.message}\n")
        time.sleep(POLL)
    _emit(results, output)
    if failed:
        by_node: dict[str, list[str]] = {}
        for r in failed:
            by_node.setdefault(r.node, []).append(r.check)
        raise UnhealthyError(
            f"the cluster is not healthy after {wait_timeout}: "
            + "; ".join(f"{node}: {', '.join(checks)}" for node, checks in by_node.items()),
            hint=f"look at {', '.join(by_node)} (talosctl services / logs)",
        )
