"""The printable assessment sheet (派驻人员考核表) of one seconded unit for one period: each
officer's figures (考核 counts, services.ledger.kpis) beside the township's opinion, with the
place for the seal (盖章). Pure: rows in, HTML out; every value is escaped."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from services.ledger.kpis import Counts, on_time_resolution_rate, satisfaction_rate

GRADES = {
    "excellent": "优秀",
    "competent": "称职",
    "basically_competent": "基本称职",
    "incompetent": "不称职",
}


@dataclass(frozen=True)
class Opinion:
    grade: str
    opinion: str
    seal: str
    assessed_at: str  # the county's date


@dataclass(frozen=True)
class Officer:
    staff_id: str
    name: str
    counts: Counts
    opinion: Opinion | None


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _row(officer: Officer) -> str:
    c, o = officer.counts, officer.opinion
    cells = (
        officer.name,
        officer.staff_id,
        str(c.closed),
        f"{c.resolution_on_time}/{c.resolution_stopped}"
        f"（{_percent(on_time_resolution_rate(c).value)}）",
        str(c.rejections),
        f"{c.satisfied}/{c.rated}（{_percent(satisfaction_rate(c).value)}）",
        f"{c.legal_review_returns}/{c.legal_reviews}",
        GRADES.get(o.grade, o.grade) if o else "未出具",
        o.opinion if o else "",
    )
    return "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>"


def render(
    unit_name: str, township_name: str, department_name: str, period: str, officers: list[Officer]
) -> str:
    seals = sorted({o.opinion.seal for o in officers if o.opinion}) or [f"{township_name}人民政府"]
    dates = sorted({o.opinion.assessed_at for o in officers if o.opinion})
    head = (
        "姓名",
        "工号",
        "办结件数",
        "按期办结",
        "退单",
        "满意",
        "法制审核退回/审核",
        "考核等次",
        "考核意见",
    )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>派驻人员考核表 {escape(unit_name)} {escape(period)}</title>
<style>
body{{font-family:"SimSun","Songti SC",serif;margin:2cm}}
table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #000;padding:4px 6px;font-size:12pt}}
.seal{{margin-top:3em;text-align:right}}
@media print{{body{{margin:1cm}}}}
</style></head><body>
<h1>派驻人员考核表</h1>
<p>派驻机构：{escape(unit_name)}　派出部门：{escape(department_name)}
　乡镇（街道）：{escape(township_name)}　考核期间：{escape(period)}</p>
<table><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>
<tbody>{"".join(_row(o) for o in officers)}</tbody></table>
<p>按期办结：按期办结的办理时限数/已停止的办理时限数；满意：满意和基本满意的评价数/评价数。</p>
<div class="seal"><p>乡镇（街道）意见（盖章）：{escape("、".join(seals))}</p>
<p>盖章处：＿＿＿＿＿＿＿＿</p><p>日期：{escape("、".join(dates)) or "＿＿年＿＿月＿＿日"}</p></div>
</body></html>
"""
