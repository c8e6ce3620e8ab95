"""Triage on the shipped sample county: which matter a citizen's words are about, and where."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.events import GeoPoint
from reference import segmentation
from reference.county import ReferenceData, load_reference
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


# ---------------------------------------------------------------- classify: segmentation

# Keywords whose characters occur in everyday words that have nothing to do with the item.
# Plain substring matching found them; jieba's segmentation does not.
FALSE_SUBSTRING_HITS = [
    # 增加/班车 ("add more buses") contains 加班 (overtime, LD-004).
    ("春节期间希望公交公司增加班车", "加班", "LD-004"),
    # 儿童/工作站 ("children's centre") contains 童工 (child labour, LD-003, weight 3).
    ("社区儿童工作站周末开不开门", "童工", "LD-003"),
    # 改变/质量 ("change the quality") contains 变质 (spoiled food, SC-003, weight 2).
    ("希望饭店改变质量差的老问题", "变质", "SC-003"),
]


@pytest.mark.parametrize(("text", "keyword", "code"), FALSE_SUBSTRING_HITS)
def test_segmentation_avoids_a_keyword_hidden_inside_other_words(
    ref: ReferenceData, text: str, keyword: str, code: str
) -> None:
    assert keyword in text  # the old substring match would have counted it
    result = classify(text, None, ref)
    assert result.item is None or result.item.code != code, result.explanation
    # The explanation says which keyword was not counted and how the text was segmented.
    assert any("不计入" in line and keyword in line for line in result.explanation)


def test_child_labour_is_still_found_when_the_citizen_says_it(ref: ReferenceData) -> None:
    result = classify("这个厂里使用童工，孩子才十三岁", None, ref)
    assert result.item is not None and result.item.code == "LD-003"
    assert result.confidence == 1.0


def test_catalogue_keywords_stay_whole_in_the_segmentation(ref: ReferenceData) -> None:
    # Multi-character keywords jieba's own dictionary lacks (飞线充电, 短斤少两) are words.
    tokens = ref.segmenter.segment("小区楼道里有人飞线充电，集市上短斤少两").tokens
    assert "飞线充电" in tokens
    assert "短斤少两" in tokens


def test_a_keyword_jieba_narrowly_splits_still_counts(ref: ReferenceData) -> None:
    # jieba cuts 有/人大/货车, yet 有/人/大货车 is nearly as likely: the keyword counts.
    assert "大货车" not in ref.segmenter.segment("有人大货车压坏路面").tokens
    result = classify("有人大货车天天从村里过", None, ref)
    assert result.item is not None and result.item.code == "JT-002", result.explanation
    assert "大货车" in result.explanation[0]


def test_the_segmenter_is_built_once_per_reference_version(ref: ReferenceData) -> None:
    assert ref.segmenter is ref.segmenter
    other = load_reference(CONFIG)
    assert other.segmenter is not ref.segmenter


# ---------------------------------------------------------------- locate: coordinates

# Expected grids worked out by hand from the rectangles in deploy/config/county.yaml
# ([[lon, lat], ...]): e.g. T01V01G01 spans lon 113.30–113.32, lat 38.70–38.733333.
INSIDE = [
    # (lat, lon, grid, village, township)
    (38.71, 113.31, "T01V01G01", "T01V01", "T01"),  # lon 113.30–113.32, lat 38.70–38.733333
    (38.78, 113.33, "T01V02G03", "T01V02", "T01"),  # lon 113.32–113.34, lat 38.766667–38.80
    (38.76, 113.225, "T03V02G02", "T03V02", "T03"),  # lon 113.216667–113.233333, lat 38.75–38.80
    (38.72, 113.205, "T03V01G01", "T03V01", "T03"),  # lon 113.20–113.216667, lat 38.70–38.75
    (38.82, 113.53, "T15V02G01", "T15V02", "T15"),  # lon 113.52–113.54, lat 38.80–38.833333
    (38.86, 113.545, "T15V03G02", "T15V03", "T15"),  # lon 113.54–113.56, lat 38.85–38.90
    (38.85, 113.59, "T15V05G01", "T15V05", "T15"),  # lon 113.58–113.60, lat 38.80–38.90
]


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float


@pytest.mark.parametrize(("lat", "lon", "grid", "village", "township"), INSIDE)
def test_coordinates_inside_a_grid_resolve_to_grid_village_and_township(
    ref: ReferenceData, lat: float, lon: float, grid: str, village: str, township: str
) -> None:
    where = locate(None, None, ref, Point(lat, lon))
    assert (where.township, where.village, where.grid) == (township, village, grid)
    assert grid in where.explanation[0] and "坐标" in where.explanation[0]


def test_the_tips_own_geopoint_is_accepted(ref: ReferenceData) -> None:
    where = locate(None, None, ref, GeoPoint(lat=38.71, lon=113.31))
    assert where.grid == "T01V01G01"


@pytest.mark.parametrize(
    ("lat", "lon", "grid", "shared"),
    [
        # The edge lat 38.75 between T03V01G01 (below) and T03V01G02 (above), one village.
        (38.75, 113.21, "T03V01G01", {"T03V01G02"}),
        # The edge lon 113.216667 between villages T03V01 and T03V02.
        (38.72, 113.216667, "T03V01G01", {"T03V02G01"}),
        # The edge lon 113.30 between townships T03 (城关镇) and T01 (龙泉街道).
        (38.71, 113.3, "T01V01G01", {"T03V06G01"}),  # T03V06G01: lon 113.283333–113.30
        # A corner four grids share.
        (38.75, 113.216667, "T03V01G01", {"T03V01G02", "T03V02G01", "T03V02G02"}),
    ],
)
def test_a_point_on_a_shared_boundary_resolves_to_the_lowest_grid_id(
    ref: ReferenceData, lat: float, lon: float, grid: str, shared: set[str]
) -> None:
    first = locate(None, None, ref, Point(lat, lon))
    again = locate(None, None, ref, Point(lat, lon))
    assert first == again
    assert first.grid == grid
    assert first.township == ref.grids[grid][0].code
    assert "交界" in first.explanation[0]
    assert all(other in first.explanation[0] for other in shared)


def test_a_point_just_outside_the_county_resolves_to_the_nearest_grid(
    ref: ReferenceData,
) -> None:
    # T15V01G01's north edge is lat 38.90 (lon 113.50–113.52); 0.003° further north is
    # 0.003 × 111.2 km ≈ 334 m.
    where = locate(None, None, ref, Point(38.903, 113.51))
    assert (where.township, where.village, where.grid) == ("T15", "T15V01", "T15V01G01")
    assert "不在任何网格内" in where.explanation[0]
    assert "334 米" in where.explanation[0]


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (38.91, 113.51),  # 0.01° north of the county ≈ 1.1 km
        (38.75, 113.09),  # 0.01° west of the county at lat 38.75 ≈ 0.87 km
        (39.9042, 116.4074),  # Beijing
    ],
)
def test_a_point_far_from_every_grid_locates_nothing(
    ref: ReferenceData, lat: float, lon: float
) -> None:
    where = locate(None, None, ref, Point(lat, lon))
    assert (where.township, where.village, where.grid) == (None, None, None)
    assert "超过 500 米" in where.explanation[0]


def test_the_order_is_grid_then_coordinates_then_address(ref: ReferenceData) -> None:
    in_t01 = Point(38.71, 113.31)  # T01V01G01
    # A valid grid id wins over the coordinates.
    assert locate("T03V02G01", "台城镇", ref, in_t01).grid == "T03V02G01"
    # An unknown grid id falls through to the coordinates, and says so.
    where = locate("T99V99G99", "台城镇", ref, in_t01)
    assert where.grid == "T01V01G01"
    assert "T99V99G99" in where.explanation[0]
    # The coordinates win over the address.
    assert locate(None, "台城镇刘家庄村", ref, in_t01).township == "T01"
    # Coordinates far away fall through to the address.
    where = locate(None, "台城镇刘家庄村", ref, Point(38.91, 113.51))
    assert (where.township, where.village, where.grid) == ("T05", "T05V02", None)
    assert len(where.explanation) == 2 and "超过 500 米" in where.explanation[0]


def test_every_shipped_grid_locates_its_own_centre(ref: ReferenceData) -> None:
    for grid_id, (township, village, grid) in ref.grids.items():
        assert grid.polygon
        ring = grid.polygon[0]
        lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
        lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
        where = locate(None, None, ref, Point(lat, lon))
        assert (where.township, where.village, where.grid) == (township.code, village.code, grid_id)


def test_the_grid_index_is_built_once_per_reference_version(ref: ReferenceData) -> None:
    assert ref.grid_locator is ref.grid_locator
    assert len(ref.grid_locator) == len(ref.grids)


def test_segmentation_needs_no_writable_temp_directory(
    ref: ReferenceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # jieba would read and write jieba.cache in the temp directory; the segmenter never does.
    def no_temp_dir() -> str:
        raise FileNotFoundError("no usable temporary directory")

    monkeypatch.setattr(tempfile, "gettempdir", no_temp_dir)
    monkeypatch.setattr(segmentation, "_base", None)
    segmenter = segmentation.KeywordSegmenter(["飞线充电"])
    assert "飞线充电" in segmenter.segment("有人飞线充电").tokens
