"""Host names: one check and one canonical form wherever one is taken (docs/api.md §2.3, §3.4, §4.1).

A name is compared in its canonical form: A-labels, lower case, no trailing dot. `bücher.example`,
`BÜCHER.example` and `XN--BCHER-KVA.example` are all `xn--bcher-kva.example`, which is what browsers send in
`Host`. Internationalised labels follow IDNA 2008 with the UTS #46 mapping (the `idna` package), not Python's
IDNA 2003 codec: that one maps `faß.de` to another domain (`fass.de`) and lets `xn--` labels through that are
no Punycode at all (`xn--zz`). A name in plain ASCII without an `xn--` label keeps the DNS rules and never
reaches the IDNA code.

A name is checked when it is written (a domain registered, a URL saved), never when stored data is read or
used: rows written before IDNA 2008 was checked (`xn--i-7iq.ws`, which the IDNA 2003 codec made of `i❤.ws`)
keep working (`stored_hostname`; the edge checks `Host` by the DNS rules only, docs/edge.md).
"""

from __future__ import annotations

import re

import idna

MAX_NAME = 253  # octets of the A-label form, without a trailing dot (RFC 1035 §2.3.4)
MAX_LABEL = 63
MAX_INPUT = 1024  # characters taken at all: a Unicode name is longer than its A-labels, but not by this much
_ACE = "xn--"
_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LDH_UNDERSCORE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class InvalidHostname(ValueError):
    pass


def needs_idna(name: str) -> bool:
    """Whether `name` has a label in Unicode or in A-label form, which only IDNA can check."""
    return not name.isascii() or _ACE in name.lower()


def canonical_hostname(name: str, *, underscores: bool = False) -> str:
    """`name` (no port, no trailing dot) as lower-case A-labels, or InvalidHostname saying why, as a clause
    ("label 'xn--zz' is no valid IDNA 2008 A-label (…)").

    `underscores` allows `_` in ASCII labels, as a URL's host may have (`my_host.example.com`); a host that
    serves codes never does.
    """
    if len(name) > MAX_INPUT:
        raise InvalidHostname(f"it is over {MAX_INPUT} characters")
    if needs_idna(name):
        try:  # UTS #46 maps case and full-width dots
            labels = idna.uts46_remap(name, std3_rules=False).split(".")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidHostname(f"it is no valid IDNA 2008 name ({exc})") from None
        for i, label in enumerate(labels):
            if label and (not label.isascii() or label.startswith(_ACE)):
                try:  # IDNA 2008; an A-label is decoded, checked and must encode back to itself
                    labels[i] = idna.alabel(label).decode("ascii")
                except (idna.IDNAError, UnicodeError) as exc:
                    labels[i] = _idna2003(label, exc)
    else:
        labels = name.lower().split(".")
    ldh = _LDH_UNDERSCORE if underscores else _LDH
    for label in labels:
        if not label:
            raise InvalidHostname("a label is empty")
        if len(label) > MAX_LABEL:
            raise InvalidHostname(f"label {label[:20]!r}… is over {MAX_LABEL} characters")
        if not label.startswith(_ACE) and not ldh.fullmatch(label):
            raise InvalidHostname(f"label {label!r} is not letters, digits and inner hyphens"
                                  + (" or underscores" if underscores else ""))
    canonical = ".".join(labels)
    if len(canonical) > MAX_NAME:
        raise InvalidHostname(f"it is over {MAX_NAME} characters in A-labels")
    return canonical


def _idna2003(label: str, refused: Exception) -> str:
    """A label IDNA 2008 refuses, as IDNA 2003 (and so every browser) still takes it: a symbol or an emoji
    (`i❤` → `xn--i-7iq`), an A-label that decodes and encodes back to itself; InvalidHostname for the rest —
    an `xn--` label that is no punycode of anything (`xn--zz`, `xn--a`)."""
    try:
        if label.startswith(_ACE):
            if label.encode("ascii").decode("idna").encode("idna").decode("ascii") == label:
                return label
        else:
            return label.encode("idna").decode("ascii").lower()
    except UnicodeError:
        pass
    kind = "A-label" if label.startswith(_ACE) else "label"
    raise InvalidHostname(f"label {label!r} is no valid IDNA 2008 or 2003 {kind} ({refused})") from None


def stored_hostname(name: str) -> str:
    """A host name read from stored data (a webhook endpoint's URL), as it is looked up and sent: never refused
    for a rule it was not written under. In lower-case A-labels by IDNA 2008 (`canonical_hostname`), else as the
    IDNA 2003 codec of earlier releases has it (`xn--i-7iq.ws` as it is, `i❤.ws` → `xn--i-7iq.ws`, as browsers
    send them); InvalidHostname only for what neither takes (an empty label, one over 63 characters)."""
    try:
        return canonical_hostname(name, underscores=True)
    except InvalidHostname:
        pass
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidHostname("a label is empty or over 63 characters") from None
