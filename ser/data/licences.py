"""The licence terms a model inherits from the corpora it was trained on.

A corpus that gave training or validation clips passes its terms on to the model: any non-commercial
corpus makes the model non-commercial, share-alike terms carry over, an unknown licence leaves the
model's terms unknown. A test-only corpus is evaluation data: listed, not inherited.

    terms = licence_terms(preprocess["corpora"])
    terms["non_commercial"], terms["summary"]
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple


class Licence(NamedTuple):
    """A recognised licence: its usual spelling and what it asks of a model trained on the data."""

    label: str
    non_commercial: bool = False
    share_alike: bool = False
    attribution: bool = False  # the licence asks to credit the corpus


GENERATED = Licence("generated")  # the project's own synthetic audio: no third-party terms
LICENCES = {
    "cc0-1.0": Licence("CC0 1.0"),
    "mit": Licence("MIT", attribution=True),
    "apache-2.0": Licence("Apache-2.0", attribution=True),
    "generated": GENERATED,
}
ALIASES = {"cc0": "cc0-1.0", "apache": "apache-2.0", "apache2": "apache-2.0", "apache-2": "apache-2.0"}
# CC BY, BY-SA, BY-NC and BY-NC-SA of any published version; ND (no derivatives) is left to a person.
CREATIVE_COMMONS = re.compile(r"^cc-by(?P<nc>-nc)?(?P<sa>-sa)?-(?P<version>[1-4]\.[05])$")


def licence_key(text: str) -> str:
    """`text` lower-cased with its words joined by hyphens: "CC BY-NC-SA 4.0 International" -> cc-by-nc-sa-4.0."""
    words = re.split(r"[\s_\-/]+", text.strip().lower())
    return "-".join(w for w in words if w and w not in ("licence", "license", "international", "v"))


def parse_licence(text: str | None) -> Licence | None:
    """The licence `text` names, or None when it is not recognised (or "unknown", or empty)."""
    key = licence_key(text or "")
    key = ALIASES.get(key, key)
    if key in LICENCES:
        return LICENCES[key]
    cc = CREATIVE_COMMONS.match(re.sub(r"^creative-commons", "cc", key))
    if cc is None:
        return None
    kind = "BY" + ("-NC" if cc["nc"] else "") + ("-SA" if cc["sa"] else "")
    return Licence(f"CC {kind} {cc['version']}", bool(cc["nc"]), bool(cc["sa"]), attribution=True)


def trains(corpus: dict[str, Any]) -> bool:
    """Whether the corpus gave the model training or validation clips (its `clips` counts, else its `use`)."""
    clips = corpus.get("clips")
    if isinstance(clips, dict):
        return (clips.get("train") or 0) + (clips.get("val") or 0) > 0
    return corpus.get("use", "all") != "test"


def licence_terms(corpora: list[dict[str, Any]]) -> dict[str, Any]:
    """The terms a model trained on `corpora` (preprocess.json's or data/corpora.json's entries) inherits.

    Returns:
        licences: corpus name -> licence (its usual spelling when recognised, else as recorded), training corpora;
        evaluation: the same for test-only corpora, whose terms are not inherited;
        non_commercial, share_alike: the inherited restrictions;
        attribution: training corpora whose licence asks for credit;
        unknown: training corpora whose licence is not recognised;
        permissive: every training corpus is known and neither non-commercial nor share-alike;
        summary: one or two sentences for a model card.
    """
    licences: dict[str, str] = {}
    evaluation: dict[str, str] = {}
    parsed: dict[str, Licence] = {}
    unknown: list[str] = []
    for corpus in corpora:
        name, text = str(corpus.get("name") or corpus.get("kind")), str(corpus.get("licence") or "unknown")
        known, inherited = parse_licence(text), trains(corpus)
        (licences if inherited else evaluation)[name] = known.label if known else text
        if inherited:
            if known is None:
                unknown.append(name)
            else:
                parsed[name] = known
    non_commercial = any(lic.non_commercial for lic in parsed.values())
    share_alike = any(lic.share_alike for lic in parsed.values())
    terms = {
        "licences": licences,
        "evaluation": evaluation,
        "non_commercial": non_commercial,
        "share_alike": share_alike,
        "attribution": [name for name, lic in parsed.items() if lic.attribution],
        "unknown": unknown,
        "permissive": bool(licences) and not (unknown or non_commercial or share_alike),
    }
    return {**terms, "summary": summary(terms, parsed)}


def and_list(words: list[str], last: str = "and") -> str:
    """Words as prose: "a", "a and b", "a, b and c" (`last` joins the last two)."""
    return f" {last} ".join(filter(None, (", ".join(words[:-1]), words[-1]))) if words else ""


def summary(terms: dict[str, Any], parsed: dict[str, Licence]) -> str:
    """The model-card sentences for `licence_terms`' fields."""
    listed = and_list([f"{name} ({lic})" for name, lic in terms["licences"].items()])
    words = (("non-commercial", terms["non_commercial"]), ("share-alike", terms["share_alike"]))
    restricted = [word for word, on in words if on]
    if not listed:
        text = "No training corpus is recorded: the licence terms are unknown and must be checked before use."
    elif terms["unknown"]:
        text = (
            f"Trained on {listed}. The licence of {and_list(terms['unknown'])} is unknown, so the terms this model "
            "inherits are unknown and must be checked before any use"
            + (f"; they are at least {and_list(restricted)}." if restricted else ".")
        )
    elif restricted:
        same = and_list(sorted({lic.label for lic in parsed.values() if lic.share_alike}))
        rules = ["no commercial use"] if terms["non_commercial"] else []
        rules += [f"derived work must be shared under the same licence ({same})"] if terms["share_alike"] else []
        text = f"Trained on {listed}, the model inherits {and_list(restricted)} terms: {', and '.join(rules)}."
    elif all(lic is GENERATED for lic in parsed.values()):
        text = f"Trained only on the project's own generated audio ({and_list([*parsed])}): no third-party terms apply."
    else:
        credit = f"; credit {and_list(terms['attribution'])} as the licence asks" if terms["attribution"] else ""
        text = f"Trained only on permissively licensed corpora, {listed}: commercial use is allowed{credit}."
    evaluation = and_list([f"{name} ({lic})" for name, lic in terms["evaluation"].items()])
    return text + (f" Evaluated also on {evaluation}: test data only, terms not inherited." if evaluation else "")


def licence_label(terms: dict[str, Any]) -> str:
    """One word for the model store's labels: unknown | non-commercial | share-alike | permissive."""
    if terms["unknown"] or not terms["licences"]:
        return "unknown"
    if terms["non_commercial"]:
        return "non-commercial"
    return "share-alike" if terms["share_alike"] else "permissive"
