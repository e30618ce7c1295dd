"""The model card's training corpora: what it says about the data and what the data implies for its use.

One record per corpus (preprocess.json's `corpora`, or, for a model from before them, params.yaml's data
sources with the facts of `ser.data.sources.KNOWN`), and from those records: the Training data section
(a table of the corpora, a note on each, the licence terms of `ser.data.licences`), the intended and
out-of-scope uses (the corpora's languages, what their licences forbid) and the limitations (acted or
elicited emotion, language and culture covered, size), followed by the ethical ones every card carries.
`ser.serving.card` assembles the card from these and the sections about the model.
"""

from __future__ import annotations

from ser.data.licences import and_list, parse_licence, trains
from ser.data.sources import KNOWN

RAVDESS = (
    "RAVDESS speech (Livingstone & Russo, 2018, doi:10.5281/zenodo.1188976): acted North-American English "
    "speech from 24 professional actors (12 female, 12 male), each saying two fixed, lexically neutral "
    'statements ("Kids are talking by the door", "Dogs are sitting by the door") in neutral, calm, happy, '
    "sad, angry, fearful, disgust and surprised voices, at normal and strong intensity (neutral: normal only)."
)
EMODB = (
    "EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., Interspeech 2005): acted German speech "
    "from 10 actors (5 female, 5 male), each saying 10 everyday sentences in neutral, happy, sad, angry, "
    "fearful, disgust and bored voices (boredom has no class here: those clips are left out); CC0 1.0 per "
    "audEERING's data card."
)
SYNTHETIC = (
    "A **synthetic** corpus (`ser.data.synth`: source-filter speech-like audio in RAVDESS layout whose prosody "
    "depends on the emotion) generated for smoke tests and demos. It is not speech; a model trained on it "
    "says nothing about real emotional speech and **must not be used on real audio**."
)
DESCRIPTIONS = {"ravdess": RAVDESS, "emodb": EMODB, "synthetic": SYNTHETIC}
# What each known corpus's speech covers (the card's "Cultural and language bias" line).
COVERAGE = {
    "ravdess": "one accent (North-American English), one age range of professional actors and two sentences",
    "emodb": "German from 10 actors and 10 sentences",
    "synthetic": "synthetic audio, no real voice",
}
ACTED = ("ravdess", "emodb")  # corpora of emotions portrayed by actors
LEGACY_SIZE = {"ravdess": (1440, 24)}  # clips, speakers of RAVDESS speech: cards of models from before `corpora`
LANGUAGES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "nl": "Dutch",
    "pt": "Portuguese",
    "el": "Greek",
    "zh": "Chinese",
    "ja": "Japanese",
}
OUT_OF_SCOPE = [
    "High-stakes decisions about people: hiring, education, credit, insurance, policing, border control, "
    "lie or threat detection.",
    "Clinical or health use (diagnosis, screening, monitoring of mood or mental health).",
    "Surveillance, or analysing anyone who has not consented to having their voice analysed.",
]
LIMITATIONS = [
    "**A label is not a feeling.** The output is the emotion the corpus labels say was portrayed, as heard in the "
    "voice, not the inner state of a speaker; it must not be used to infer intent, honesty or health.",
    "**Consent and privacy.** Voice is personal data (biometric in many jurisdictions); analyse only audio "
    "whose speakers agreed to it, and do not keep it longer than needed.",
    "**Not for high-stakes decisions and no clinical use**, whatever the scores above.",
]


def bullets(items: list[str]) -> str:
    """Markdown bullet list."""
    return "\n".join(f"- {item}" for item in items)


def corpora_of(params: dict, preprocess: dict) -> list[dict]:
    """The model's corpora: preprocess.json's `corpora`, or, for a model from before them, params.yaml's sources."""
    if preprocess.get("corpora"):
        return list(preprocess["corpora"])
    data = params.get("data") or {}
    return [
        source_corpus(s) for s in ([data["source"]] if data.get("source") else data.get("sources") or ["synthetic"])
    ]


def source_corpus(source: str | dict) -> dict:
    """A params.yaml source as a corpus record, its facts from `ser.data.sources.KNOWN`.

    A folder string is RAVDESS-layout audio (the only layout before `data.sources`); clip and speaker counts are
    unknown but RAVDESS speech's.
    """
    if isinstance(source, str):
        source = {"kind": source} if source in KNOWN else {"kind": "ravdess", "path": source}
    spec = source
    kind = spec.get("kind")
    facts = KNOWN.get(kind) if kind else None
    clips, speakers = LEGACY_SIZE.get(kind or "", (None, None))
    return {
        "name": spec.get("name") or kind or "unnamed",
        "kind": kind,
        "source": spec.get("path"),
        "use": spec.get("use") or "all",
        "language": spec.get("language") or (facts.language if facts else None),
        "licence": spec.get("licence") or (facts.licence if facts else "unknown"),
        "licence_url": None if spec.get("licence") or not facts else facts.licence_url,
        "citation": spec.get("citation") or (facts.citation if facts else "unknown"),
        "clips": clips,
        "speakers": speakers,
    }


def language_names(corpora: list[dict]) -> list[str]:
    """The corpora's languages in words, each once, in corpus order (codes without a name as they are)."""
    codes = [str(c["language"]) for c in corpora if c.get("language")]
    return list(dict.fromkeys(LANGUAGES.get(code.split("-")[0].lower(), code) for code in codes))


def counts(value: dict | int | None) -> str:
    """A table cell for clips or speakers: train / val / test, a total, or n/a."""
    if isinstance(value, dict):
        return " / ".join(f"{value.get(split) or 0:,}" for split in ("train", "val", "test"))
    return "n/a" if value is None else f"{value:,} in all"


def total(value: dict | int | None, distinct: bool = True) -> int | None:
    """Clips or speakers of a corpus over its splits (`distinct`: the splits share none, else the largest)."""
    if isinstance(value, dict):
        return (sum if distinct else max)(int(v or 0) for v in value.values())
    return value


def corpus_table(corpora: list[dict]) -> str:
    """One row per corpus: name, language, clips and speakers per split, licence (linked), citation."""
    rows = []
    for c in corpora:
        known = parse_licence(c.get("licence"))
        licence = known.label if known else str(c.get("licence") or "unknown")
        licence = f"[{licence}]({c['licence_url']})" if c.get("licence_url") else licence
        language = ", ".join(language_names([c])) or "n/a"
        name = f"`{c.get('name')}`" + ("" if trains(c) else " (test only)")
        cells = (name, language, counts(c.get("clips")), counts(c.get("speakers")), licence, c.get("citation"))
        rows.append("| " + " | ".join(str(cell or "unknown") for cell in cells) + " |")
    head = "| corpus | language | clips (train / val / test) | speakers (train / val / test) | licence | citation |"
    return head + "\n|---|---|---|---|---|---|\n" + "\n".join(rows)


def corpus_note(corpus: dict) -> str:
    """A sentence or two on one corpus: where its audio came from and what it is."""
    kind, source = corpus.get("kind"), corpus.get("source")
    where = f" ({'RAVDESS-layout ' if kind == 'ravdess' else ''}audio in `{source}`)" if source else ""
    language = and_list(language_names([corpus])) or "language not recorded"
    about = DESCRIPTIONS.get(str(kind)) or (
        f"A labelled corpus ({language}): how its emotions were elicited and labelled is not recorded here; "
        "see its citation."
    )
    return f"`{corpus.get('name')}`{where}: {about}"


def data_section(corpora: list[dict], terms: dict) -> str:
    """Training data: the corpora's table, a note on each, and the licence terms the model inherits."""
    notes = bullets([corpus_note(c) for c in corpora])
    return f"{corpus_table(corpora)}\n\n{notes}\n\n### Licence\n\n{terms['summary']}"


def intended_use(languages: list[str]) -> list[str]:
    """The intended uses, for a model trained on speech in `languages`."""
    speaker = f"a single {and_list(languages, 'or')} speaker" if languages else "a single speaker"
    return [
        "Research, teaching and demos of speech emotion recognition on short (a few seconds), clean clips of "
        f"{speaker}.",
        "Aggregate analysis where an error on any one clip carries no consequence for a person.",
    ]


def out_of_scope(languages: list[str], terms: dict) -> list[str]:
    """The uses out of scope: always the high-stakes ones; commercial use when the licence forbids it."""
    items = list(OUT_OF_SCOPE)
    if terms["non_commercial"]:
        items.append("Commercial use (the training data's licence forbids it; see Licence).")
    if terms["unknown"]:
        items.append(f"Any use before the unknown licence terms of {and_list(terms['unknown'])} are checked.")
    language = f"speech in a language other than {and_list(languages, 'or')}" if languages else "any real speech"
    items.append(
        f"Spontaneous, conversational, noisy, far-field or multi-speaker speech, or {language}, without re-validation."
    )
    return items


def limitations(corpora: list[dict], params: dict) -> list[str]:
    """Limitations from the corpora's facts, then the ethical ones every card carries."""
    training = [c for c in corpora if trains(c)]
    acted = [str(c.get("name")) for c in training if c.get("kind") in ACTED]
    other = [str(c.get("name")) for c in training if c.get("kind") not in (*ACTED, "synthetic")]
    items = []
    if acted:
        items.append(
            f"**Acted, not spontaneous emotion** ({and_list(acted)}). Actors portray exaggerated, prototypical "
            "emotions; real emotion is subtler, mixed and context-dependent, and accuracy on natural speech is "
            "expected to be much lower."
        )
    if other:
        items.append(
            f"**How the emotions were elicited** in {and_list(other)} is not recorded here: acted, elicited and "
            "natural emotion differ, so check its documentation before reading the scores."
        )
    covered = [
        f"{COVERAGE.get(str(c.get('kind'))) or and_list(language_names([c])) or 'an unrecorded language'} "
        f"({c.get('name')})"
        for c in training
    ]
    items.append(
        f"**Cultural and language bias.** The training data covers {'; '.join(covered)}; emotional expression "
        "differs across cultures, languages, ages and speaking styles, and the model has seen little of that variation."
    )
    items.append(
        "**Recordings unlike the training corpora.** On a corpus none of its training corpora resembles, a model of "
        "this kind scores far lower (about 50 % UAR in the project's RAVDESS / EmoDB cross-corpus matrix); a "
        "calibration profile estimated from the deployment's own unlabelled recordings (`ser calibrate`) recovers "
        "part of that (docs/benchmark.md, Domain calibration)."
    )
    distinct = ((params.get("split") or {}).get("method") or "speaker") == "speaker"
    clips = [n for c in corpora if (n := total(c.get("clips"))) is not None]
    speakers = [n for c in corpora if (n := total(c.get("speakers"), distinct)) is not None]
    size = (
        f"{sum(clips):,} clips from {sum(speakers)} speakers ({and_list([str(c.get('name')) for c in corpora])})"
        if len(clips) == len(speakers) == len(corpora)
        else "The corpora are small"
    )
    items.append(
        f"**Small data.** {size}: per-class test scores rest on few clips and few speakers and have wide "
        "confidence intervals."
    )
    return items + LIMITATIONS
