"""Validation that runs before storage: names, filters, page tokens, masks."""

from __future__ import annotations

import pytest
from modelregistry_server.domain.errors import InvalidArgument, Unavailable
from modelregistry_server.domain.filters import LabelEquals, LabelPresent, StateEquals, parse_filter
from modelregistry_server.domain.names import (
    AliasName,
    VersionName,
    parse_alias_name,
    parse_model_name,
    parse_version_name,
)
from modelregistry_server.domain.resources import VersionState
from modelregistry_server.domain.validation import check_labels
from modelregistry_server.service.page_tokens import (
    MAX_PAGE_SIZE,
    PageTokens,
    coerce_page_size,
)
from modelregistry_server.service.update_masks import resolve_mask


def reason(exc: pytest.ExceptionInfo[InvalidArgument]) -> str:
    return exc.value.reason


def test_names_round_trip() -> None:
    assert str(parse_model_name("models/fraud-v2")) == "models/fraud-v2"
    assert parse_version_name("models/fraud/versions/12") == VersionName("fraud", 12)
    assert parse_alias_name("models/fraud/aliases/production") == AliasName("fraud", "production")


@pytest.mark.parametrize(
    "bad",
    [
        "fraud",
        "models/",
        "models/Fraud",
        "models/fraud-",
        "models/1fraud",
        "models/" + "a" * 64,
        "models/fraud/versions/0",
        "models/fraud/versions/01",
        "models/fraud/versions/-1",
        "models/fraud/versions/9999999999999999999",
        "models/fraud/aliases/Prod",
        "models/fraud\n",
        "models/../etc",
    ],
)
def test_malformed_names_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        if "/versions/" in bad:
            parse_version_name(bad)
        elif "/aliases/" in bad:
            parse_alias_name(bad)
        else:
            parse_model_name(bad)
    assert reason(exc) == "INVALID_NAME"


def test_filter_terms() -> None:
    flt = parse_filter('labels.team = "risk" AND labels.tier:* AND state != ARCHIVED', True)
    assert flt.terms == (
        LabelEquals("team", "risk"),
        LabelPresent("tier"),
        StateEquals(VersionState.ARCHIVED, negate=True),
    )
    assert parse_filter('labels.k = "a \\"q\\" b"', False).terms == (LabelEquals("k", 'a "q" b'),)


@pytest.mark.parametrize(
    "bad",
    [
        "team = risk",
        "labels.team",
        "labels.team = risk OR labels.x = y",
        "labels.team ~ risk",
        "labels.Team = x",
        "state = READY",  # not allowed for models
        "labels.team = risk AND",
        "labels.a:x",
        "x" * 2000,
    ],
)
def test_bad_filters_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_filter(bad, allow_state=False)
    assert reason(exc) == "INVALID_FILTER"


def test_unknown_state_in_filter() -> None:
    with pytest.raises(InvalidArgument):
        parse_filter("state = DELETED", allow_state=True)


def test_page_tokens_are_bound_and_tamper_proof() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode("ListModels|", "m5")
    assert tokens.decode("ListModels|", token) == "m5"
    for forged in (token[:-2] + "AA", "x" + token, "e30.AAAA", "not-a-token", "a.b.c"):
        with pytest.raises(InvalidArgument):
            tokens.decode("ListModels|", forged)
    with pytest.raises(InvalidArgument):  # same token, other filter
        tokens.decode('ListModels|labels.a = "b"', token)
    with pytest.raises(InvalidArgument):  # another server's key
        PageTokens(b"o" * 32).decode("ListModels|", token)
    assert tokens.decode("ListModels|", "") is None
    with pytest.raises(Unavailable):
        PageTokens().encode("s", 1)


def test_page_size_coercion() -> None:
    assert coerce_page_size(0) == 50
    assert coerce_page_size(10**9) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        coerce_page_size(-1)


def test_update_masks() -> None:
    allowed = frozenset({"a", "b", "c"})
    assert resolve_mask([], allowed, {"a": True, "b": False}, allowed) == {"a"}
    assert resolve_mask(["*"], allowed, {}, frozenset({"a"})) == {"a"}
    with pytest.raises(InvalidArgument) as exc:
        resolve_mask(["a", "uid"], allowed, {}, allowed)
    assert reason(exc) == "INVALID_UPDATE_MASK"
    with pytest.raises(InvalidArgument):
        resolve_mask([], allowed, {}, allowed)


def test_label_limits() -> None:
    check_labels({"team": "risk", "a.b-c_d": ""}, "labels")
    for bad in ({"Team": "x"}, {"k": "x" * 64}, {"k": "sp ace"}, {f"k{i}": "" for i in range(65)}):
        with pytest.raises(InvalidArgument) as exc:
            check_labels(bad, "labels")
        assert reason(exc) == "INVALID_LABELS"
