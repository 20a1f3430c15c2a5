"""Loading and encoding v1alpha1 machine configs.

:func:`load` parses the text strictly (:mod:`libtalos.yamlio`), recognises the document kind,
and decodes it into a :class:`~libtalos.config.v1alpha1.Config`. The result keeps the
:class:`~libtalos.yamlio.Document`, so that a stage that changes nothing can write the original
bytes back, and so that validation can name lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from libtalos.config import schema
from libtalos.config.v1alpha1 import VERSION, Config
from libtalos.errors import Problem, ValidationError
from libtalos.yamlio import Document, load_documents

# kind -> model. v0.9 has one document kind; the table is where later kinds would go.
REGISTRY: dict[str, type[Config]] = {VERSION: Config}


@dataclass
class LoadedConfig:
    """A decoded config and the document it came from."""

    config: Config
    document: Document

    @property
    def text(self) -> str:
        """The document's original text (byte-for-byte pass-through)."""
        return self.document.text


def _kind(doc: Document) -> tuple[str | None, Problem | None]:
    data = doc.data
    if not isinstance(data, dict):
        return None, doc.problem((), "a machine config must be a mapping")
    if "apiVersion" in data or "kind" in data:
        kind = data.get("kind")
        what = f"kind {kind}" if isinstance(kind, str) else "an apiVersion/kind document"
        return None, doc.problem(
            ("kind",) if "kind" in data else ("apiVersion",),
            f"{what} is not supported (only the v1alpha1 machine config is)",
        )
    version = data.get("version")
    if version is None:
        if "machine" in data:  # Talos v0.9 recognises a v1alpha1 document by `machine`
            return VERSION, None
        return None, doc.problem(
            (), "not a machine config (no `version: v1alpha1` and no `machine` key)"
        )
    if not isinstance(version, str) or version not in REGISTRY:
        return None, doc.problem(
            ("version",), f"unsupported version (supported: {', '.join(REGISTRY)})"
        )
    return version, None


def load(text: str, source: str = "<stdin>", *, max_nodes: int | None = None) -> LoadedConfig:
    """Strictly load one machine config document (of at most ``max_nodes`` YAML nodes).

    Raises :class:`~libtalos.errors.ParseError` for malformed YAML and
    :class:`~libtalos.errors.ValidationError` (every problem at once) for a document that does
    not fit the model. Messages name the source, document, key path and line; never a value.
    """
    documents = load_documents(text, source, max_nodes=max_nodes)
    if len(documents) != 1:
        raise ValidationError(
            [
                Problem(
                    message=f"expected one machine config document, found {len(documents)}",
                    source=source,
                    line=documents[1].line(()) if len(documents) > 1 else None,
                    document=2 if len(documents) > 1 else None,
                )
            ]
        )
    doc = documents[0]
    kind, problem = _kind(doc)
    if problem is not None or kind is None:
        raise ValidationError([problem] if problem is not None else [])
    config = schema.decode(REGISTRY[kind], doc)
    config.source_document = doc
    return LoadedConfig(config, doc)


def encode(cfg: Config, *, comments: bool = True) -> str:
    """A config as YAML text: with Talos-style doc comments and commented examples, or plain."""
    if comments:
        return schema.to_commented_yaml(cfg)
    return schema.dump_plain(schema.to_data(cfg))


def to_data(cfg: Config) -> dict[str, object]:
    """A config as plain data (what :func:`encode` writes without comments)."""
    data = schema.to_data(cfg)
    assert isinstance(data, dict)  # noqa: S101 - a model always encodes to a mapping
    return data


def redacted(cfg: Config) -> dict[str, object]:
    """Plain data with every secret value masked, for logs and diagnostics."""
    data = schema.redacted(cfg)
    assert isinstance(data, dict)  # noqa: S101 - a model always encodes to a mapping
    return data
