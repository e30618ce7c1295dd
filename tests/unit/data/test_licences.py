"""`ser.data.licences`: the terms a model inherits from its training corpora (test-only corpora pass none on)."""

from __future__ import annotations

import pytest

from ser.data.licences import and_list, licence_label, licence_terms, parse_licence


def corpus(name: str, licence: str, train: int = 100, test: int = 20, **extra) -> dict:
    return {"name": name, "licence": licence, "clips": {"train": train, "val": train // 10, "test": test}, **extra}


RAVDESS = corpus("ravdess", "CC-BY-NC-SA-4.0", kind="ravdess")
EMODB = corpus("emodb", "CC0-1.0", kind="emodb")


@pytest.mark.parametrize(
    ("text", "label", "non_commercial", "share_alike"),
    [
        ("CC-BY-NC-SA-4.0", "CC BY-NC-SA 4.0", True, True),
        ("CC BY-NC-SA 4.0", "CC BY-NC-SA 4.0", True, True),
        ("cc by-nc-sa 4.0 international", "CC BY-NC-SA 4.0", True, True),
        ("CC BY-NC 4.0", "CC BY-NC 4.0", True, False),
        ("cc_by_sa_4.0", "CC BY-SA 4.0", False, True),
        ("CC-BY-4.0", "CC BY 4.0", False, False),
        ("cc0", "CC0 1.0", False, False),
        ("CC0 1.0", "CC0 1.0", False, False),
        ("MIT License", "MIT", False, False),
        ("Apache License 2.0", "Apache-2.0", False, False),
        ("generated", "generated", False, False),
    ],
)
def test_parse_licence_reads_the_usual_spellings(text, label, non_commercial, share_alike):
    known = parse_licence(text)
    assert known is not None and known.label == label
    assert (known.non_commercial, known.share_alike) == (non_commercial, share_alike)


@pytest.mark.parametrize("text", ["unknown", "", None, "CC BY-ND 4.0", "GPL-3.0", "ask the lab"])
def test_anything_else_is_unknown(text):
    assert parse_licence(text) is None


def test_ravdess_alone_is_non_commercial_and_share_alike():
    terms = licence_terms([RAVDESS])
    assert terms["licences"] == {"ravdess": "CC BY-NC-SA 4.0"}
    assert terms["non_commercial"] and terms["share_alike"] and not terms["permissive"] and terms["unknown"] == []
    assert "no commercial use" in terms["summary"] and "same licence (CC BY-NC-SA 4.0)" in terms["summary"]
    assert licence_label(terms) == "non-commercial"


def test_a_permissive_corpus_does_not_lift_the_non_commercial_terms():
    terms = licence_terms([RAVDESS, EMODB])
    assert terms["licences"] == {"ravdess": "CC BY-NC-SA 4.0", "emodb": "CC0 1.0"}
    assert terms["non_commercial"] and terms["share_alike"] and not terms["permissive"]
    assert "ravdess (CC BY-NC-SA 4.0) and emodb (CC0 1.0)" in terms["summary"]
    assert "non-commercial and share-alike" in terms["summary"]


def test_emodb_alone_is_permissive():
    terms = licence_terms([EMODB])
    assert terms["permissive"] and not terms["non_commercial"] and not terms["share_alike"]
    assert "permissively licensed" in terms["summary"] and "commercial use is allowed" in terms["summary"]
    assert licence_label(terms) == "permissive"
    cc_by = licence_terms([EMODB, corpus("talks", "CC BY 4.0")])
    assert cc_by["permissive"] and cc_by["attribution"] == ["talks"] and "credit talks" in cc_by["summary"]


def test_share_alike_alone_is_not_permissive():
    terms = licence_terms([corpus("wiki", "CC BY-SA 4.0")])
    assert terms["share_alike"] and not terms["non_commercial"] and not terms["permissive"]
    assert licence_label(terms) == "share-alike" and "no commercial use" not in terms["summary"]


def test_an_unknown_licence_makes_the_terms_unknown():
    callcentre = corpus("callcentre", "unknown", kind="labelled")
    terms = licence_terms([EMODB, callcentre])
    assert terms["unknown"] == ["callcentre"] and not terms["permissive"]
    assert "unknown" in terms["summary"] and "must be checked before any use" in terms["summary"]
    assert licence_label(terms) == "unknown"
    missing = licence_terms([{"name": "lab", "use": "all"}])  # no licence recorded at all
    assert missing["unknown"] == ["lab"] and missing["licences"] == {"lab": "unknown"}
    with_nc = licence_terms([RAVDESS, corpus("odd", "ask the lab")])
    assert with_nc["unknown"] == ["odd"] and with_nc["licences"]["odd"] == "ask the lab"
    assert "at least non-commercial and share-alike" in with_nc["summary"]


def test_a_test_only_corpus_is_evaluation_data_not_inherited():
    by_counts = corpus("ravdess", "CC-BY-NC-SA-4.0", train=0, test=1440)
    by_use = {"name": "ravdess", "licence": "CC-BY-NC-SA-4.0", "use": "test"}  # data/corpora.json's form
    for test_only in (by_counts, by_use):
        terms = licence_terms([EMODB, test_only])
        assert terms["licences"] == {"emodb": "CC0 1.0"} and terms["evaluation"] == {"ravdess": "CC BY-NC-SA 4.0"}
        assert terms["permissive"] and not terms["non_commercial"] and not terms["share_alike"]
        assert "Evaluated also on ravdess (CC BY-NC-SA 4.0): test data only" in terms["summary"]
    validation_only = corpus("ravdess", "CC-BY-NC-SA-4.0", train=0, test=0) | {"clips": {"train": 0, "val": 5}}
    assert licence_terms([validation_only])["non_commercial"]  # validation clips chose the model: inherited


def test_generated_audio_and_no_corpus():
    terms = licence_terms([{"name": "synthetic", "kind": "synthetic", "licence": "generated", "use": "all"}])
    assert terms["permissive"] and "no third-party terms apply" in terms["summary"]
    empty = licence_terms([])
    assert not empty["permissive"] and "unknown" in empty["summary"] and licence_label(empty) == "unknown"


def test_and_list():
    assert [and_list(w) for w in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]
    assert and_list(["English", "German"], "or") == "English or German"
