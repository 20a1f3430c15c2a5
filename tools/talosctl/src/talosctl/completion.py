"""``talosctl completion bash|zsh|fish``: shell code completing talosctl's command words.

The words come from :data:`talosctl.cli.ROUTES` alone, so a new route completes with no code
here. The script holds the table of "words so far -> next words" and walks the command line:
talosctl's global flags (and the value after ``--talosconfig``, ``-n`` ...) are skipped, and
once a word is not a command word (an argument), or the words make a whole command, the shell's
own file-name completion takes over. Options are not completed.

Loading it: ``source <(talosctl completion bash)``; ``talosctl completion zsh >
"${fpath[1]}/_talosctl"`` (or ``source <(talosctl completion zsh)``); ``talosctl completion fish
> ~/.config/fish/completions/talosctl.fish``. Exit codes: 0, 2 for a missing or unknown shell.
"""

from __future__ import annotations

import re
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from talosctl.cli import Route

SHELLS = ("bash", "zsh", "fish")
PROG = "talosctl"
_WORD = re.compile(r"[a-z0-9][a-z0-9-]*")  # what a command word may be (so: no quoting needed)

USAGE = f"""Usage: talosctl completion SHELL

Print shell code that completes talosctl's commands; SHELL is one of {", ".join(SHELLS)}.

  source <(talosctl completion bash)
  talosctl completion zsh > "${{fpath[1]}}/_talosctl"
  talosctl completion fish > ~/.config/fish/completions/talosctl.fish
"""


def next_words(routes: Iterable[Route]) -> dict[str, list[str]]:
    """For each sequence of command words that starts a route (space-joined; ``""`` for none),
    the words that may follow it, sorted."""
    table: dict[str, set[str]] = {}
    for route in routes:
        for word in route.words:
            if _WORD.fullmatch(word) is None:
                raise ValueError(f"route word {word!r} cannot be completed")
        for i, word in enumerate(route.words):
            table.setdefault(" ".join(route.words[:i]), set()).add(word)
    return {path: sorted(words) for path, words in sorted(table.items())}


def _value_flags() -> list[str]:
    from talosctl.cli import GLOBAL_FLAGS

    return sorted(GLOBAL_FLAGS)


def bash(table: dict[str, list[str]], value_flags: Sequence[str]) -> str:
    cases = "".join(
        f"        '{path}') __talosctl_words='{' '.join(words)}' ;;\n"
        for path, words in table.items()
    )
    return f"""# bash completion for talosctl: its command words (talosctl completion bash)
__talosctl_next() {{
    case "$1" in
{cases}        *) __talosctl_words='' ;;
    esac
}}

__talosctl_complete() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmdpath='' word i skip=0
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if ((skip)); then
            skip=0
            [[ "$word" == "=" ]] && skip=1  # --talosconfig=FILE split at the '='
            continue
        fi
        case "$word" in
            {"|".join(value_flags)}) skip=1; continue ;;
            -*) continue ;;
        esac
        __talosctl_next "$cmdpath"
        case " $__talosctl_words " in
            *" $word "*) cmdpath="${{cmdpath:+$cmdpath }}$word" ;;
            *) return 0 ;;  # an argument: the command words are done
        esac
    done
    [[ "$cur" == -* ]] && return 0
    __talosctl_next "$cmdpath"
    COMPREPLY=($(compgen -W "$__talosctl_words" -- "$cur"))
}}

complete -o default -F __talosctl_complete {PROG}
"""


def zsh(table: dict[str, list[str]], value_flags: Sequence[str]) -> str:
    cases = "".join(
        f"        '{path}') reply=({' '.join(words)}) ;;\n" for path, words in table.items()
    )
    return f"""#compdef talosctl
# zsh completion for talosctl: its command words (talosctl completion zsh)
__talosctl_next() {{
    case "$1" in
{cases}        *) reply=() ;;
    esac
}}

_talosctl() {{
    local cmdpath='' word
    local -i i skip=0
    local -a reply
    for ((i = 2; i < CURRENT; i++)); do
        word="${{words[i]}}"
        if ((skip)); then
            skip=0
            continue
        fi
        case "$word" in
            ({"|".join(value_flags)}) skip=1; continue ;;
            (-*) continue ;;
        esac
        __talosctl_next "$cmdpath"
        if ((${{reply[(Ie)$word]}})); then
            cmdpath="${{cmdpath:+$cmdpath }}$word"
        else
            _files
            return
        fi
    done
    __talosctl_next "$cmdpath"
    if [[ "${{words[CURRENT]}}" != -* ]] && ((${{#reply}})); then
        compadd -- "${{reply[@]}}"
    else
        _files
    fi
}}

if [[ "${{funcstack[1]}}" == _talosctl ]]; then
    _talosctl "$@"
else
    compdef _talosctl {PROG}
fi
"""


def fish(table: dict[str, list[str]], value_flags: Sequence[str]) -> str:
    cases = "".join(
        f"        case '{path}'\n            printf '%s\\n' {' '.join(words)}\n"
        for path, words in table.items()
    )
    return f"""# fish completion for talosctl: its command words (talosctl completion fish)
function __talosctl_next --argument-names cmdpath
    switch "$cmdpath"
{cases}    end
end

function __talosctl_words
    set -l cmdpath ''
    set -l skip 0
    for word in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $word
            case {" ".join(value_flags)}
                set skip 1
                continue
            case '-*'
                continue
        end
        if contains -- $word (__talosctl_next "$cmdpath")
            set cmdpath (string trim -- "$cmdpath $word")
        else
            return
        end
    end
    __talosctl_next "$cmdpath"
end

complete -c {PROG} -f -n '__talosctl_words | string length -q' -a '(__talosctl_words)'
"""


GENERATORS = {"bash": bash, "zsh": zsh, "fish": fish}


def script(shell: str) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    from talosctl.cli import ROUTES

    return GENERATORS[shell](next_words(ROUTES), _value_flags())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if len(args) != 1 or args[0] not in GENERATORS:
        given = "no shell" if not args else f"{' '.join(args)!r}"
        sys.stderr.write(f"error: SHELL: expected one of {', '.join(SHELLS)}, got {given}\n")
        sys.stderr.write(USAGE)
        return 2
    sys.stdout.write(script(args[0]))
    return 0
