"""``talos-gen patch``: apply patches to machine configs, stdin to stdout.

Machine-config documents in the stream are patched and loaded back strictly; any other document
(a talosconfig in a ``config -o -`` stream) passes through byte for byte, and so does everything
when no patch is given; a document that is neither is passed through with a warning on stderr
naming it. Patches given to a stream without any machine config are an error (they would apply to
nothing). ``--patch @-`` reads one patch from stdin, when the input is a file.
"""

from __future__ import annotations

import sys

import typer


def _body(text: str) -> str:
    """A document's text without its leading ``---`` marker line."""
    if text.startswith("---"):
        return text.split("\n", 1)[1] if "\n" in text else ""
    return text


def patch_command(
    patch: list[str] | None = typer.Option(
        None,
        "--patch",
        "-p",
        help="RFC 6902 list or YAML mapping; @FILE reads a file, @- stdin (repeatable).",
    ),
    file: str = typer.Argument("-", help="The input stream; '-' (default) for stdin."),
    output: str = typer.Option("-", "--output", "-o", help="Where to write; '-' for stdout."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Patch machine configs (stdin to stdout)."""
    from libtalos import config as cfgmod
    from libtalos import yamlio
    from libtalos.fsutil import SECRET_MODE, read_input, write_output
    from libtalos.patch import PatchError, apply_patch, read_patch_groups

    text, source = read_input(file)
    (patches,) = read_patch_groups(patch, stdin_taken=file == "-", option="--patch")
    docs = yamlio.load_documents(text, source)
    out: list[str] = []
    patched = 0
    for doc in docs:
        if not patches or not (isinstance(doc.data, dict) and "machine" in doc.data):
            if patches and not (isinstance(doc.data, dict) and "contexts" in doc.data):
                line = doc.line(())
                where = f"{source}:{line}" if line else source
                sys.stderr.write(
                    f"warning: {where} document {doc.index}: not a machine config (no `machine` "
                    "key): passed through unpatched\n"
                )
            out.append(_body(doc.text))
            continue
        cfgmod.load(doc.text, f"{source} document {doc.index}")  # the input itself must be valid
        data = doc.data
        for body, origin in patches:
            data = apply_patch(data, body, origin)
        result_cfg = cfgmod.load(yamlio.dump(data), f"{source} document {doc.index} (patched)")
        out.append(cfgmod.encode(result_cfg.config))
        patched += 1
    if patches and not patched:
        raise PatchError(
            f"{source}: no machine config in the input (no document has a `machine` key): "
            "the patches would apply to nothing"
        )
    result = text if not patches else yamlio.join_documents(out)
    write_output(output, result, mode=SECRET_MODE, force=force)
    if output == "-":
        sys.stdout.flush()
