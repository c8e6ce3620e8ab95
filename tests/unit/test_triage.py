"""Triage on the shipped sample county: which matter a citizen's words are about, and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.dispatch.reference import ReferenceData, load_reference
from services.dispatch.triage import CONFIDENT_SCORE, classify, locate

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"


@pytest.fixture(scope="module")
def ref() -> ReferenceData:
    return load_reference(CONFIG)


# ---------------------------------------------------------------- classify: keywords

# Natural complaints as a citizen would type or a hotline operator would key them in,
# across market, transport, emergency, labour, ecology, urban, health, agriculture,
# culture and police items.
CITIZEN_TEXTS = [
    ("我们小区门口每天早上都有小摊贩占道经营，把人行道都堵了", "CG-001"),
    ("在村口超市买的牛奶已经过了保质期，打开发现已经变质了", "SC-003"),
    ("县城汽车站门口好多黑车拉客，司机态度很差", "JT-001"),
    ("楼道里有很浓的煤气味，怀疑邻居家燃气泄漏，请赶快来人", "YJ-002"),
    ("工地包工头拖欠我们农民工工资三个月了，一直不发工资", "LD-001"),
    ("村东头地里有人烧秸秆，浓烟滚滚，呛得人睁不开眼", "ST-001"),
    ("楼下广场舞每天晚上放到十点，高音喇叭太吵了", "CG-007"),
    ("有个游医在集市上给人打针看病，大家都说那是黑诊所", "WS-001"),
    ("有人在河里电鱼，鱼都死了一大片", "NY-006"),
    ("镇上新开了一家黑网吧，没有任何牌照", "WH-002"),
    ("小区里有人遛狗不拴绳，把孩子吓哭了", "GA-002"),
    ("有人在基本农田里挖土卖土，好好的地挖得坑坑洼洼", "ZR-004"),
]


@pytest.mark.parametrize(("text", "expected"), CITIZEN_TEXTS)
def test_keywords_pick_the_intended_item(ref: ReferenceData, text: str, expected: str) -> None:
    result = classify(text, None, ref)
    assert result.item is not None, result.explanation
    assert result.item.code == expected, result.explanation
    assert result.confidence == 1.0


def test_the_sample_texts_cover_several_domains(ref: ReferenceData) -> None:
    domains = {ref.items[code].domain for _, code in CITIZEN_TEXTS}
    assert len(domains) >= 6


@pytest.mark.parametrize(("text", "expected"), CITIZEN_TEXTS)
def test_each_classification_explains_itself_naming_the_item(
    ref: ReferenceData, text: str, expected: str
) -> None:
    result = classify(text, None, ref)
    assert result.explanation
    assert all(line.strip() for line in result.explanation)
    assert expected in result.explanation[0]


@pytest.mark.parametrize("spelling", ["ktv", "Ktv", "ＫＴＶ"])
def test_keywords_match_regardless_of_latin_case_and_width(
    ref: ReferenceData, spelling: str
) -> None:
    # The catalogue keyword is written "KTV"; citizens type "ktv", and a Chinese input method
    # in full-width mode produces "ＫＴＶ". No other catalogue keyword is in this text.
    result = classify(f"小区楼下的{spelling}半夜还在营业，吵得人睡不着", None, ref)
    assert result.item is not None, result.explanation
    assert result.item.code == "WH-003"


# ---------------------------------------------------------------- classify: the channel's hint


@pytest.mark.parametrize("hint", ["noise", "CG-007"])
def test_category_hint_wins_over_keywords_with_full_confidence(
    ref: ReferenceData, hint: str
) -> None:
    # The text is plainly about electro-fishing, but the channel said "noise".
    result = classify("有人在河里电鱼，鱼都死了一大片", hint, ref)
    assert result.item is not None
    assert result.item.code == "CG-007"
    assert result.confidence == 1.0
    assert any("CG-007" in line for line in result.explanation)


def test_hint_matches_item_without_keyword_in_text(ref: ReferenceData) -> None:
    result = classify("请尽快处理", "illegal-mining", ref)
    assert result.item is not None
    assert result.item.code == "ZR-003"
    assert result.confidence == 1.0


def test_unknown_hint_falls_back_to_keywords(ref: ReferenceData) -> None:
    result = classify("县城汽车站门口好多黑车拉客", "something-else", ref)
    assert result.item is not None
    assert result.item.code == "JT-001"


# ---------------------------------------------------------------- classify: no match, ambiguity


@pytest.mark.parametrize("text", ["今天天气很好，谢谢你们的工作", "", "请问办事大厅几点下班？"])
def test_text_without_catalogue_keyword_gives_no_item(ref: ReferenceData, text: str) -> None:
    result = classify(text, None, ref)
    assert result.item is None
    assert result.confidence == 0
    assert result.explanation and result.explanation[0].strip()


def test_ambiguous_text_is_less_confident_than_unambiguous(ref: ReferenceData) -> None:
    clear = classify("有人在河里电鱼", None, ref)
    both = classify("有人在河里电鱼，还有人在岸边烧垃圾", None, ref)  # NY-006 and ST-002
    assert clear.item is not None and both.item is not None
    assert clear.confidence == 1.0
    assert 0 < both.confidence < clear.confidence
    # The runner-up is named so the dispatcher can see the alternative.
    assert any("ST-002" in line for line in both.explanation)


def test_a_tie_is_broken_deterministically(ref: ReferenceData) -> None:
    a = classify("有人在河里电鱼，还有人在岸边烧垃圾", None, ref)
    b = classify("有人在岸边烧垃圾，还有人在河里电鱼", None, ref)
    assert a.item is not None and b.item is not None
    assert a.item.code == b.item.code
    assert a.confidence == b.confidence


def test_a_single_weak_keyword_is_not_fully_confident(ref: ReferenceData) -> None:
    # "营业执照" alone has weight 1.0 (SC-001), below the score that counts as confident.
    result = classify("想问一下营业执照在哪里办", None, ref)
    assert result.item is not None
    assert result.item.code == "SC-001"
    assert result.confidence == pytest.approx(1.0 / CONFIDENT_SCORE)
    assert result.confidence < 1.0


def test_confidence_stays_within_unit_interval(ref: ReferenceData) -> None:
    for text, _ in CITIZEN_TEXTS:
        combined = text + "，另外" + CITIZEN_TEXTS[0][0]
        result = classify(combined, None, ref)
        assert 0.0 <= result.confidence <= 1.0


# ---------------------------------------------------------------- locate


def test_known_grid_resolves_to_its_village_and_township(ref: ReferenceData) -> None:
    where = locate("T03V02G01", None, ref)
    assert (where.township, where.village, where.grid) == ("T03", "T03V02", "T03V02G01")
    assert where.explanation and "T03V02G01" in where.explanation[0]


def test_grid_wins_over_address(ref: ReferenceData) -> None:
    where = locate("T03V02G01", "白家庄镇下社村", ref)
    assert (where.township, where.village) == ("T03", "T03V02")


def test_unknown_grid_falls_through_to_the_address(ref: ReferenceData) -> None:
    where = locate("T99V99G99", "城关镇十里铺村村委会旁边", ref)
    assert (where.township, where.village, where.grid) == ("T03", "T03V03", None)
    assert where.explanation


@pytest.mark.parametrize(
    ("address", "township", "village"),
    [
        ("豆村镇大营村南头的小卖部门口", "T07", "T07V02"),
        ("陈家庄乡中庄村村委会", "T12", "T12V02"),
        ("台城镇刘家庄村", "T05", "T05V02"),
        ("龙泉街道府前社区3号楼", "T01", "T01V02"),
        ("白家庄镇政府附近", "T08", None),
    ],
)
def test_address_naming_township_and_village_resolves(
    ref: ReferenceData, address: str, township: str, village: str | None
) -> None:
    where = locate(None, address, ref)
    assert where.township == township
    assert where.village == village
    assert where.grid is None
    assert where.explanation and where.explanation[0].strip()


@pytest.mark.parametrize(
    ("grid", "address"), [(None, None), (None, "不知道在哪里"), ("T99V99G99", None), ("", "")]
)
def test_nothing_known_gives_no_township_with_explanation(
    ref: ReferenceData, grid: str | None, address: str | None
) -> None:
    where = locate(grid, address, ref)
    assert (where.township, where.village, where.grid) == (None, None, None)
    assert where.explanation and where.explanation[0].strip()


def test_unknown_grid_is_named_in_the_explanation(ref: ReferenceData) -> None:
    where = locate("T99V99G99", None, ref)
    assert "T99V99G99" in where.explanation[0]


def test_every_shipped_grid_locates_to_its_own_village(ref: ReferenceData) -> None:
    for township in ref.county.townships:
        for village in township.villages:
            for grid in village.grids:
                where = locate(grid.id, None, ref)
                assert (where.township, where.village) == (township.code, village.code)
