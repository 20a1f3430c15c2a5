"""The installer's screens (Textual): the form, the review, the talosconfig question, the
progress. Imported only when ``apply-config --interactive`` runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from talos_apply.interactive import model

# What the app needs from the node: GenerateConfiguration and ApplyConfiguration, each a
# coroutine that returns the reply's message or raises with a message for the screen.
Generate = Callable[[Any], Awaitable[Any]]
Apply = Callable[[bytes], Awaitable[str]]

CSS = """
Screen { background: $surface; }
#title { height: 1; background: $primary; color: $text; text-style: bold; padding: 0 1; }
.section { height: 1; margin-top: 1; text-style: bold; }
.row { height: 1; }
.row Label { width: 26; }
.row Input { width: 32; }
.row Select { width: 32; }
.row .iface-mode { width: 16; }
.row .iface-cidr { width: 22; }
.row .iface-gw { width: 18; }
.error { color: $error; width: 1fr; padding: 0 0 0 1; }
#disks { height: auto; max-height: 6; width: 72; }
#disk-header { height: 1; color: $text-muted; }
#status { height: auto; color: $error; }
#buttons { height: 1; margin-top: 1; }
#buttons Button { margin-right: 2; }
#yaml { height: 1fr; border: round $primary; }
#summary { height: auto; }
OverwriteScreen { align: center middle; }
#dialog { width: 76; height: auto; border: thick $warning; background: $panel; padding: 1 2; }
#dialog Horizontal { height: 1; margin-top: 1; }
#dialog Button { margin-right: 2; }
#log { height: auto; }
"""


@dataclass
class Outcome:
    """How the installer ended: ``applied`` once the node took the config."""

    applied: bool = False
    talosconfig: Path | None = None
    mode: str = ""
    error: str = ""


def shown_path(path: Path) -> str:
    """``path`` as the screens name it: ``./NAME`` in the working directory."""
    try:
        return f"./{path.relative_to(Path.cwd())}"
    except ValueError:
        return str(path)


def _disk_row(d: model.DiskInfo) -> str:
    return f"{d.name:<16} {d.model or '-':<28} {model.human_size(d.size):>10}"


def _iface_label(i: model.IfaceInfo) -> str:
    up = " (UP)" if i.up else ""
    return f"{i.name}, {i.mac or '-'}{up}"


class FormScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("ctrl+r", "review", "Review"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, facts: model.NodeFacts, values: model.FormValues, where: str) -> None:
        super().__init__()
        self.facts = facts
        self.values = values
        self.where = where
        # field id -> (its label's id, the label's text, its text while the field has focus):
        # the focused field is marked in the text itself, so it shows without colours too
        self._labels: dict[str, tuple[str, str, str]] = {}

    def compose(self) -> ComposeResult:
        v = self.values
        yield Static(f"Talos interactive installer: {self.where}", id="title")
        with VerticalScroll():
            yield Static("Install disk (the node's disks)", classes="section")
            yield Static(f"  {'DEVICE NAME':<16} {'MODEL NAME':<28} {'SIZE':>10}", id="disk-header")
            yield OptionList(
                *[Option(_disk_row(d), id=d.name) for d in self.facts.disks],
                id="disks",
                compact=True,
            )
            yield from self._row(
                "Install disk", Input(v.install_disk, id="install-disk", compact=True)
            )
            yield Static("Machine config", classes="section")
            yield from self._row(
                "Cluster name", Input(v.cluster_name, id="cluster-name", compact=True)
            )
            yield from self._row(
                "Control plane endpoint", Input(v.endpoint, id="endpoint", compact=True)
            )
            yield from self._row(
                "Machine type",
                Select(
                    [(name, name) for name, _ in model.MACHINE_TYPES],
                    value=v.machine_type,
                    allow_blank=False,
                    id="machine-type",
                    compact=True,
                ),
            )
            yield Static("Network config", classes="section")
            yield from self._row(
                "Hostname",
                Input(v.hostname, placeholder="(node's own)", id="hostname", compact=True),
            )
            yield from self._row(
                "DNS servers",
                Input(
                    v.nameservers,
                    placeholder="e.g. 1.1.1.1, 8.8.8.8",
                    id="nameservers",
                    compact=True,
                ),
            )
            yield Static("Network interfaces", classes="section")
            for i, (info, form) in enumerate(zip(self.facts.interfaces, v.interfaces, strict=True)):
                addrs = ", ".join(info.addresses) or "no address"
                yield Static(f"{_iface_label(info)}  [{addrs}]", classes="row", markup=False)
                for what, wid in (("mode", "mode"), ("CIDR", "cidr"), ("gateway", "gateway")):
                    self._labels[f"{wid}-{i}"] = (f"iface-{i}-label", "", f"▸ {info.name} {what}")
                with Horizontal(classes="row"):
                    yield Label("", id=f"iface-{i}-label", markup=False)
                    yield Select(
                        [(m, m) for m in model.IFACE_MODES],
                        value=form.mode,
                        allow_blank=False,
                        id=f"mode-{i}",
                        classes="iface-mode",
                        compact=True,
                    )
                    yield Input(
                        form.cidr,
                        placeholder="CIDR",
                        id=f"cidr-{i}",
                        classes="iface-cidr",
                        compact=True,
                    )
                    yield Input(
                        form.gateway,
                        placeholder="gateway",
                        id=f"gateway-{i}",
                        classes="iface-gw",
                        compact=True,
                    )
                with Horizontal(classes="row"):
                    yield Label("")
                    yield Static("", id=f"cidr-{i}-error", classes="error", markup=False)
                    yield Static("", id=f"gateway-{i}-error", classes="error", markup=False)
            yield Static("", id="status", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Review", id="review", variant="primary", compact=True)
                yield Button("Quit", id="quit", compact=True)
        yield Footer()

    def _row(self, label: str, widget: Any) -> ComposeResult:
        label_id = f"{widget.id}-label"
        self._labels[widget.id] = (label_id, f"  {label}", f"▸ {label}")
        with Horizontal(classes="row"):
            yield Label(f"  {label}", id=label_id, markup=False)
            yield widget
            yield Static("", id=f"{widget.id}-error", classes="error", markup=False)

    def on_mount(self) -> None:
        self._show_problems()
        self.query_one("#install-disk", Input).focus()

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        node: Any = event.widget
        while node is not None and node.id not in self._labels:
            node = node.parent
        focused = node.id if node is not None else None
        for field_id, (label_id, plain, _marked) in self._labels.items():
            if field_id != focused:
                self.query_one(f"#{label_id}", Label).update(plain)
        if focused is not None:
            label_id, _, marked = self._labels[focused]
            self.query_one(f"#{label_id}", Label).update(marked)

    # ----------------------------------------------------------- the values as they change

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        key = event.input.id or ""
        v = self.values
        simple = {
            "install-disk": "install_disk",
            "cluster-name": "cluster_name",
            "endpoint": "endpoint",
            "hostname": "hostname",
            "nameservers": "nameservers",
        }
        if key in simple:
            setattr(v, simple[key], event.value.strip())
        elif key.startswith("cidr-"):
            v.interfaces[int(key[5:])].cidr = event.value.strip()
        elif key.startswith("gateway-"):
            v.interfaces[int(key[8:])].gateway = event.value.strip()
        self._show_problems()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        key = event.select.id or ""
        if key == "machine-type":
            self.values.machine_type = str(event.value)
        elif key.startswith("mode-"):
            self.values.interfaces[int(key[5:])].mode = str(event.value)
        self._show_problems()

    @on(OptionList.OptionSelected, "#disks")
    def _disk_picked(self, event: OptionList.OptionSelected) -> None:
        disk = self.query_one("#install-disk", Input)
        disk.value = event.option.id or ""
        disk.focus()

    def _show_problems(self) -> dict[str, str]:
        found = model.problems(self.values, self.facts)
        for w in self.query(".error"):
            field_id = (w.id or "").removesuffix("-error")
            w.update(found.get(field_id, ""))  # type: ignore[attr-defined]
        return found

    # ----------------------------------------------------------- review

    @on(Button.Pressed, "#quit")
    def action_quit(self) -> None:
        self.app.exit(Outcome(error="quit before anything was applied"))

    @on(Button.Pressed, "#review")
    def action_review(self) -> None:
        found = self._show_problems()
        status = self.query_one("#status", Static)
        if found:
            first = next(iter(found))
            status.update(f"fix the {len(found)} marked field(s) first")
            self.query_one(f"#{first}").focus()
            return
        status.update("Generating configuration on the node...")
        self._generate()

    @work(exclusive=True)
    async def _generate(self) -> None:
        app: InstallerApp = self.app  # type: ignore[assignment]
        status = self.query_one("#status", Static)
        try:
            config_text = await app.generate_config(self.values)
        except Exception as exc:  # noqa: BLE001 - the node's refusal is shown, not raised
            status.update(f"the node refused: {exc}")
            return
        status.update("")
        app.push_screen(ReviewScreen(config_text, self.values, app.talosconfig_path))


class ReviewScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+a", "apply", "Apply"),
    ]

    def __init__(self, config_text: str, values: model.FormValues, dest: Path) -> None:
        super().__init__()
        self.config_text = config_text
        self.values = values
        self.dest = dest

    def compose(self) -> ComposeResult:
        v = self.values
        yield Static("Review the generated machine config (secrets masked)", id="title")
        yield Static(
            f"machine type {v.machine_type}, install disk {v.install_disk}, hostname "
            f"{v.hostname or '(node default)'}, cluster {v.cluster_name} at {v.endpoint}\n"
            f"talosconfig of the new cluster -> {shown_path(self.dest)}",
            id="summary",
            markup=False,
        )
        with VerticalScroll(id="yaml"):
            yield Static(model.review_text(self.config_text), markup=False)
        with Horizontal(id="buttons"):
            yield Button("Apply", id="apply", variant="primary", compact=True)
            yield Button("Back", id="back", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#apply", Button).focus()

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.app.pop_screen()

    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        if self.dest.exists():
            self.app.push_screen(OverwriteScreen(self.dest), self._chosen)
        else:
            self._chosen(self.dest)

    def _chosen(self, dest: Path | None) -> None:
        if dest is None:
            return  # cancelled: back on the review
        self.app.push_screen(ProgressScreen(self.config_text, dest))


class OverwriteScreen(ModalScreen[Path | None]):
    """./talosconfig exists: replace it, keep it (the new one goes to talosconfig.new), or
    go back."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.kept = model.free_new_path(path)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(
                f"{shown_path(self.path)} already exists (it may hold another cluster's "
                "credentials).\nOverwrite it with the new cluster's talosconfig?\n"
                f"No keeps it and writes the new one to {shown_path(self.kept)}.",
                markup=False,
            )
            with Horizontal():
                yield Button("No, keep it", id="keep", variant="primary", compact=True)
                yield Button("Yes, overwrite", id="overwrite", variant="error", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        choice = {"keep": self.kept, "overwrite": self.path}.get(event.button.id or "")
        self.dismiss(choice)


class ProgressScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("enter", "leave", "Exit", show=False),
        Binding("q", "leave", "Exit"),
    ]

    def __init__(self, config_text: str, dest: Path) -> None:
        super().__init__()
        self.config_text = config_text
        self.dest = dest
        self.finished = False
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("Installing Talos", id="title")
        yield Static("", id="log", markup=False)

    def _say(self, line: str) -> None:
        self.lines.append(line)
        self.query_one("#log", Static).update("\n".join(self.lines))

    def on_mount(self) -> None:
        self._run()

    @work(exclusive=True)
    async def _run(self) -> None:
        app: InstallerApp = self.app  # type: ignore[assignment]
        outcome = app.outcome
        try:
            self._say(f"Writing the new cluster's talosconfig to {shown_path(self.dest)} ...")
            outcome.talosconfig = model.write_talosconfig(self.dest, app.talosconfig_data)
            self._say("  done (mode 0600)")
            self._say("Applying the configuration ...")
            outcome.mode = await app.apply_config(self.config_text.encode())
            outcome.applied = True
            self._say(f"  done: the node applies it ({outcome.mode}) and leaves maintenance mode")
            self._say("")
            self._say(f"Next: talosctl --talosconfig {shown_path(self.dest)} -n NODE version")
        except Exception as exc:  # noqa: BLE001 - shown on the screen, then reported on exit
            outcome.error = str(exc)
            self._say(f"  failed: {exc}")
        self._say("")
        self._say("Press Enter to exit.")
        self.finished = True

    def action_leave(self) -> None:
        if self.finished:
            self.app.exit(self.app.outcome)  # type: ignore[attr-defined]


class InstallerApp(App[Outcome]):
    TITLE = "talosctl apply-config --interactive"
    CSS = CSS
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        facts: model.NodeFacts,
        where: str,
        generate: Generate,
        apply: Apply,
        talosconfig_path: Path,
    ) -> None:
        super().__init__()
        self.facts = facts
        self.where = where
        self._generate_call = generate
        self._apply_call = apply
        self.talosconfig_path = talosconfig_path
        self.talosconfig_data = b""
        self.outcome = Outcome()
        self.values = model.initial(facts)

    def on_mount(self) -> None:
        self.push_screen(FormScreen(self.facts, self.values, self.where))

    async def generate_config(self, values: model.FormValues) -> str:
        """GenerateConfiguration for ``values``; the config text (with the DNS servers)."""
        reply = await self._generate_call(
            model.generate_request(values, now=dt.datetime.now(dt.UTC))
        )
        if not reply.data:
            raise RuntimeError("the node returned no config")
        self.talosconfig_data = bytes(reply.talosconfig)
        text = bytes(reply.data[0]).decode("utf-8")
        return model.with_nameservers(text, model.split_servers(values.nameservers))

    async def apply_config(self, data: bytes) -> str:
        return await self._apply_call(data)
