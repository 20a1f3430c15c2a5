"""libtalos.lazyre: PyYAML's and cryptography's import-time patterns compiled on first use."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, re, sys
deferred = sys.argv[1] == "deferred"
if deferred:
    from libtalos.lazyre import import_deferred
    import_deferred("yaml", "cryptography.x509")
import yaml, yaml.reader, cryptography.x509 as x509
import cryptography.x509.name as name
import email.utils  # standard library, imported by cryptography.x509 while re.compile is swapped
out = {
    "restored": re.compile.__module__ == "re",
    "reader": type(yaml.reader.Reader.NON_PRINTABLE).__name__,
    "parser": type(name._RFC4514NameParser._OID_RE).__name__,
    "stdlib": sorted({type(v).__name__ for v in vars(email.utils).values()
                      if type(v).__name__ in ("Pattern", "LazyPattern")}),
}
# the libraries still work through the deferred patterns
text = "a: 2001-12-14\nb: yes\nc: 0x1F\nd: ~\ne: 1.5\nf: text\n"
out["yaml"] = repr(yaml.load(text, Loader=yaml.SafeLoader))
try:
    yaml.load("a: \x07", Loader=yaml.SafeLoader)
    out["nonprintable"] = "accepted"
except yaml.reader.ReaderError:
    out["nonprintable"] = "refused"
out["rfc4514"] = x509.Name.from_rfc4514_string("CN=a\\,b,O=system:masters,2.5.4.11=#78").rfc4514_string()
out["reader_after"] = type(yaml.reader.Reader.NON_PRINTABLE._compiled).__name__ if deferred else "-"
print(json.dumps(out))
"""


def _probe(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_deferred_patterns_are_lazy_and_the_libraries_agree() -> None:
    deferred, plain = _probe("deferred"), _probe("plain")
    assert deferred["reader"] == deferred["parser"] == "LazyPattern"
    assert plain["reader"] == plain["parser"] == "Pattern"  # negative control
    assert deferred["restored"] is True
    assert deferred["stdlib"] == ["Pattern"]  # other modules' patterns compile as usual
    assert deferred["reader_after"] == "Pattern"  # compiled by its first use
    for key in ("yaml", "nonprintable", "rfc4514"):
        assert deferred[key] == plain[key], key
    assert plain["nonprintable"] == "refused"
    assert plain["rfc4514"] == "CN=a\\,b,O=system:masters,OU=x"
