// The township's meeting page (联席会议 · 乡镇工作台): a township leader refers overdue whistles
// or a case to a joint meeting, records that it sat (attendance, minutes) and its decisions.
//
// Everything goes through escalation's HTTP API with the leader's own token: GET /v1/whistles
// (?township=…&state=overdue), POST /v1/meetings, GET /v1/meetings, POST
// /v1/meetings/{id}/held and /decisions. The token stays in this tab's session storage. Times
// are read and shown in the county's time zone. `?case=<id>` fills the case to refer.
// The shared helpers ($, when, element, say, call, DECISION_STATUS) are in pages.js.
"use strict";

const TOKEN_KEY = "whistle.township.token";
const OFFSET = "+08:00"; // the county's time zone has no summer time
const WHISTLE_STATUS = { receipt_overdue: "报到已超期", reply_overdue: "回复已超期" };
const OWNER_KIND = { department: "县直部门", unit: "乡镇单位" };


function explain(status, body) {
  const detail = body && body.detail ? `（服务器说明：${body.detail}）` : "";
  if (status === 401) return `未通过身份验证：需要有效的乡镇领导访问令牌${detail}`;
  if (status === 403) return `无权操作：召开联席会议须由本乡镇领导进行${detail}`;
  if (status === 404) return `没有找到${detail}`;
  if (status === 409) return `当前状态下不能这样办理${detail}`;
  if (status === 422) return `填写的内容不符合要求${detail}`;
  return `请求失败（${status}）${detail}`;
}


// A datetime-local value, read in the county's time zone.
const zoned = (value) => `${value}:00${OFFSET}`;
const lines = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);
const codes = (text) => text.split(/[,，\s]+/).map((c) => c.trim().toUpperCase()).filter(Boolean);

async function act(task, done) {
  document.body.dataset.state = "loading";
  try {
    await task();
    await load();
    say(done, "ok");
  } catch (error) {
    say(error.message, "bad");
  } finally {
    document.body.dataset.state = "done";
  }
}

function renderWhistles(whistles) {
  const body = $("#whistles tbody");
  body.replaceChildren();
  for (const w of whistles) {
    const receipt = w.status === "receipt_overdue";
    body.append(element("tr", { "data-whistle-id": w.whistle_id, class: "overdue" },
      element("td", {}, element("input", { type: "checkbox", class: "refer", value: w.whistle_id })),
      element("td", {}, w.reason, element("span", { class: "ids" }, `案件 ${w.case_id}`)),
      element("td", {}, w.department_code),
      element("td", {}, element("span", { class: `state ${w.status}` }, WHISTLE_STATUS[w.status] || w.status)),
      element("td", { class: "time" }, when((receipt ? w.receipt : w.reply).due_at))));
  }
  if (!whistles.length) {
    body.append(element("tr", {}, element("td", { colspan: "5", class: "empty" }, "暂无超期吹哨")));
  }
  $("#whistles-count").textContent = `共 ${whistles.length} 件`;
  $("#whistles-section").hidden = false;
}

function heldForm(meeting) {
  const form = element("form", { class: "held" });
  const boxes = element("div", { class: "attend" });
  for (const code of meeting.departments) {
    boxes.append(element("label", {}, element("input", { type: "checkbox", value: code }), code));
  }
  const minutes = element("textarea", { class: "minutes-input", required: "" });
  form.append(element("label", {}, "出席部门"), boxes, element("label", {}, "会议纪要"), minutes,
    element("span", {}), element("button", { type: "submit" }, "记录出席和会议纪要"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const attended = [...boxes.querySelectorAll("input:checked")].map((b) => b.value);
    act(() => call("POST", `/v1/meetings/${meeting.meeting_id}/held`,
      { attended, minutes: minutes.value.trim() }), "已记录出席情况和会议纪要");
  });
  return form;
}

function decisionForm(meeting) {
  const form = element("form", { class: "decide" });
  const caseSelect = element("select", { class: "decision-case" },
    ...meeting.case_ids.map((id) => element("option", { value: id }, id)));
  const kind = element("select", { class: "owner-kind" },
    ...Object.entries(OWNER_KIND).map(([value, label]) => element("option", { value }, label)));
  const owner = element("input", { class: "owner-code", required: "", placeholder: "部门代码或乡镇单位编号" });
  const task = element("textarea", { class: "task", required: "" });
  const due = element("input", { class: "due-at", type: "datetime-local", required: "" });
  form.append(element("label", {}, "所属案件"), caseSelect, element("label", {}, "责任类别"), kind,
    element("label", {}, "责任单位"), owner, element("label", {}, "议定事项"), task,
    element("label", {}, "完成时限"), due, element("span", {}),
    element("button", { type: "submit" }, "记录议定事项"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {
      case_id: caseSelect.value, owner_kind: kind.value, owner_code: owner.value.trim(),
      task: task.value.trim(), due_at: zoned(due.value),
    };
    act(() => call("POST", `/v1/meetings/${meeting.meeting_id}/decisions`, body), "已记录议定事项");
  });
  return form;
}

function decisionsTable(decisions) {
  const rows = decisions.map((d) => element("tr", { "data-decision-id": d.decision_id },
    element("td", {}, d.task, element("span", { class: "ids" }, `案件 ${d.case_id}`)),
    element("td", {}, `${OWNER_KIND[d.owner_kind] || d.owner_kind} ${d.owner_code}`),
    element("td", { class: "time" }, when(d.due_at)),
    element("td", {}, element("span", { class: `state ${d.status}` }, DECISION_STATUS[d.status] || d.status)),
    element("td", {}, d.result || "")));
  return element("table", { class: "decisions" },
    element("thead", {}, element("tr", {}, ...["议定事项", "责任单位", "完成时限", "状态", "办理结果"]
      .map((h) => element("th", {}, h)))),
    element("tbody", {}, ...rows));
}

function renderMeetings(meetings) {
  const box = $("#meetings");
  box.replaceChildren();
  for (const m of meetings) {
    const card = element("div", { class: "meeting", "data-meeting-id": m.meeting_id },
      element("h3", {}, `${when(m.held_at)} · ${m.place}`),
      element("div", {}, `通知参会部门：${m.departments.join("、")}`),
      element("ul", { class: "agenda" }, ...m.agenda.map((a) => element("li", {}, a))));
    if (m.held) {
      card.append(element("div", { class: "attendance" },
        `出席：${m.attended.join("、") || "无"}；缺席：${m.absent.join("、") || "无"}`),
      element("div", { class: "minutes" }, m.minutes));
      if (m.decisions.length) card.append(decisionsTable(m.decisions));
      card.append(decisionForm(m));
    } else {
      card.append(element("div", { class: "pending" }, "会议尚未记录纪要"), heldForm(m));
    }
    box.append(card);
  }
  if (!meetings.length) box.append(element("p", { class: "empty" }, "暂无联席会议"));
  $("#meetings-count").textContent = `共 ${meetings.length} 次`;
  $("#meetings-section").hidden = false;
}

async function load() {
  const [whistles, meetings] = await Promise.all([
    call("GET", "/v1/whistles?state=overdue"),
    call("GET", "/v1/meetings"),
  ]);
  renderWhistles(whistles.whistles);
  renderMeetings(meetings.meetings);
  $("#convene-section").hidden = false;
  return whistles.whistles.length;
}

function convene(event) {
  event.preventDefault();
  const whistleIds = [...document.querySelectorAll("#whistles input.refer:checked")].map((b) => b.value);
  const caseId = $("#case-id").value.trim();
  const body = {
    held_at: zoned($("#held-at").value),
    place: $("#place").value.trim(),
    agenda: lines($("#agenda").value),
    case_ids: caseId ? [caseId] : [],
    whistle_ids: whistleIds,
    departments: codes($("#departments").value),
  };
  act(() => call("POST", "/v1/meetings", body), "已召开联席会议，参会部门已收到通知");
}

async function lookUp(event) {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  document.body.dataset.state = "loading";
  try {
    const count = await load();
    say(count ? `本乡镇有 ${count} 件超期吹哨` : "本乡镇暂无超期吹哨", "ok");
  } catch (error) {
    for (const id of ["#whistles-section", "#convene-section", "#meetings-section"]) $(id).hidden = true;
    say(error.message, "bad");
  } finally {
    document.body.dataset.state = "done";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("#case-id").value = new URLSearchParams(location.search).get("case") || "";
  $("#lookup").addEventListener("submit", lookUp);
  $("#convene").addEventListener("submit", convene);
  $("#forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#token").value = "";
    say("令牌已清除", "ok");
  });
});
