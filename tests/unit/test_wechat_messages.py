"""Reading WeChat callback XML safely, and the replies that store nothing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from services.intake.wechat_messages import (
    BLANK,
    TOO_LONG,
    UNRECOGNISED_VOICE,
    UNSUPPORTED,
    WELCOME,
    MalformedMessage,
    RatingWords,
    accepted_reply,
    answer_without_storing,
    inbound,
    rating_in,
    read_fields,
    text_reply,
)

HEAD = "<ToUserName>gh_account</ToUserName><FromUserName>oOpenId-1</FromUserName>"


def _message(body: str) -> str:
    return f"<xml>{HEAD}<CreateTime>1763700000</CreateTime>{body}</xml>"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE xml [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType>
<Content>&lol3;</Content><MsgId>1</MsgId></xml>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType>
<Content>&secret;</Content><MsgId>1</MsgId></xml>"""


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS, XXE, '<!DOCTYPE xml SYSTEM "http://example.com/x.dtd"><xml/>', "<xml>", ""],
)
def test_entities_dtds_and_broken_xml_are_refused(document: str) -> None:
    with pytest.raises(MalformedMessage):
        read_fields(document.encode())


def test_only_an_xml_root_with_the_required_fields_is_a_message() -> None:
    with pytest.raises(MalformedMessage, match="root"):
        read_fields(b"<message/>")
    with pytest.raises(MalformedMessage, match="MsgType"):
        inbound(read_fields(b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName></xml>"))
    with pytest.raises(MalformedMessage, match="MsgId"):
        inbound(read_fields(_message("<MsgType>text</MsgType><Content>x</Content>").encode()))


def test_the_four_kinds_taken() -> None:
    text = inbound(
        read_fields(
            _message(
                "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ 路口积水 ]]></Content>"
                "<MsgId>101</MsgId>"
            ).encode()
        )
    )
    assert (text.account, text.openid, text.msg_id, text.content) == (
        "gh_account",
        "oOpenId-1",
        "101",
        "路口积水",
    )
    image = inbound(
        read_fields(
            _message(
                "<MsgType>image</MsgType><PicUrl>http://mmbiz.example/p.jpg</PicUrl>"
                "<MediaId>M1</MediaId><MsgId>102</MsgId>"
            ).encode()
        )
    )
    assert (image.pic_url, image.media_id) == ("http://mmbiz.example/p.jpg", "M1")
    place = inbound(
        read_fields(
            _message(
                "<MsgType>location</MsgType><Location_X>34.60</Location_X>"
                "<Location_Y>106.90</Location_Y><Scale>15</Scale><Label>城关镇五里铺村</Label>"
                "<MsgId>103</MsgId>"
            ).encode()
        )
    )
    assert place.location is not None and (place.location.lat, place.location.lon) == (34.6, 106.9)
    assert place.label == "城关镇五里铺村"
    voice = inbound(
        read_fields(
            _message(
                "<MsgType>voice</MsgType><MediaId>V1</MediaId><Format>amr</Format>"
                "<Recognition>垃圾没人清理</Recognition><MsgId>104</MsgId>"
            ).encode()
        )
    )
    assert voice.recognition == "垃圾没人清理" and answer_without_storing(voice) is None


def test_a_location_outside_the_globe_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="Location_X"):
        inbound(
            read_fields(
                _message(
                    "<MsgType>location</MsgType><Location_X>134.6</Location_X>"
                    "<Location_Y>106.9</Location_Y><MsgId>1</MsgId>"
                ).encode()
            )
        )


def test_what_is_answered_without_storing_anything() -> None:
    def answer(body: str) -> str | None:
        return answer_without_storing(inbound(read_fields(_message(body).encode())))

    assert answer("<MsgType>event</MsgType><Event>subscribe</Event>") == WELCOME
    assert answer("<MsgType>event</MsgType><Event>unsubscribe</Event>") == "success"
    assert answer("<MsgType>video</MsgType><MediaId>x</MediaId><MsgId>1</MsgId>") == UNSUPPORTED
    assert answer("<MsgType>text</MsgType><Content>   </Content><MsgId>1</MsgId>") == BLANK
    assert answer("<MsgType>voice</MsgType><MediaId>x</MediaId><MsgId>1</MsgId>") == (
        UNRECOGNISED_VOICE
    )
    long = "很" * 4001
    assert answer(f"<MsgType>text</MsgType><Content>{long}</Content><MsgId>1</MsgId>") == TOO_LONG
    assert answer("<MsgType>text</MsgType><Content>有人偷倒渣土</Content><MsgId>1</MsgId>") is None


def test_the_reply_goes_back_to_the_follower_and_survives_cdata_breakers() -> None:
    message = inbound(
        read_fields(
            _message("<MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId>").encode()
        )
    )
    now = datetime(2026, 11, 21, 4, tzinfo=UTC)
    reply = ET.fromstring(text_reply(message, "a]]>b 受理", now))
    assert reply.findtext("ToUserName") == "oOpenId-1"
    assert reply.findtext("FromUserName") == "gh_account"
    assert reply.findtext("MsgType") == "text"
    assert reply.findtext("CreateTime") == str(int(now.timestamp()))
    assert reply.findtext("Content") == "a]]>b 受理"


def test_the_acceptance_reply_names_tracking_number_code_and_window() -> None:
    reply = accepted_reply("QX20261121-263724", "321278", timedelta(minutes=30))
    assert "受理编号 QX20261121-263724" in reply and "查询码 321278" in reply
    assert "30 分钟" in reply


@pytest.mark.parametrize(
    ("said", "words"),
    [
        ("评价 满意", RatingWords("satisfied", explicit=True)),
        ("评价：基本满意。", RatingWords("basically_satisfied", explicit=True)),
        ("评价3", RatingWords("dissatisfied", explicit=True)),
        (" 2 ", RatingWords("basically_satisfied", explicit=False)),
        ("１", RatingWords("satisfied", explicit=False)),  # full-width, as phones type it
        ("不满意！", RatingWords("dissatisfied", explicit=False)),
        ("评价 很好", None),
        ("村口有人占道摆摊，不满意", None),
        ("12", None),
    ],
)
def test_a_reply_rates_with_evaluation_words_or_1_2_3(said: str, words: RatingWords | None) -> None:
    assert rating_in(said) == words
