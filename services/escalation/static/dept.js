// The department page (吹哨报到): a county department's open whistles, reporting in and replying;
// the joint meetings (联席会议) it is summoned to, and reporting its decisions there done.
//
// Everything goes through escalation's HTTP API with the department's own token:
// GET /v1/whistles, POST /v1/whistles/{id}/receipt and /reply, GET /v1/meetings, POST
// /v1/meeting-decisions/{id}/done, GET /v1/calendar (the banner while the business calendar
// lacks the current year). The token stays in this tab's session
// storage. Times are shown in the county's time zone; a due time counted Monday to Friday in a
// year the calendar lacks is marked 暂定.
//
// The referral form (移送) is dispatch's: the page asks escalation where dispatch is
// (GET /v1/referral-target) and posts POST /v1/referrals there with the same token and an
// Idempotency-Key kept until the referral is answered, so a retry after a lost answer refers once.
// The shared helpers ($, when, element, say, call, DECISION_STATUS) are in pages.js.
"use strict";

const TOKEN_KEY = "whistle.dept.token";
const STATUS = {
  awaiting_receipt: "待报到",
  receipt_overdue: "报到已超期",
  awaiting_reply: "已报到，待回复",
  reply_overdue: "回复已超期",
  replied: "已回复",
};
const URGENCY = { emergency: "紧急", utilities: "水电气热", general: "一般", complex: "疑难" };


// The department a token acts for, if it names exactly one (its `dept:` scope): a convenience
// for the form; the server decides what the token may do.
function departmentOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
    const depts = (claims.scopes || []).filter((s) => s.startsWith("dept:") && s !== "dept:*");
    return depts.length === 1 ? depts[0].slice(5) : "";
  } catch {
    return "";
  }
}

function explain(status, body) {
  const detail = body && body.detail ? `（服务器说明：${body.detail}）` : "";
  if (status === 401) return `未通过身份验证：需要有效的县级部门访问令牌${detail}`;
  if (status === 403) return `无权操作：该令牌不属于被召集的部门${detail}`;
  if (status === 404) return `没有找到该吹哨${detail}`;
  if (status === 409 && body && body.type && body.type.endsWith("receipt-required")) {
    return `请先报到，再回复办理结果${detail}`;
  }
  if (status === 409) return `已经提交过，不能重复提交${detail}`;
  if (status === 413 || status === 415) return `证据文件未能上传${detail}`;
  if (status === 422) return `填写的内容不符合要求${detail}`;
  return `请求失败（${status}）${detail}`;
}


function actions(whistle) {
  const box = element("div", { class: "act" });
  if (whistle.status === "awaiting_receipt" || whistle.status === "receipt_overdue") {
    const number = element("input", { class: "receipt-no", placeholder: "回执号", maxlength: "64" });
    const button = element("button", { type: "button", class: "report" }, "报到");
    button.addEventListener("click", () => submit(whistle, "receipt", { receipt_no: number.value.trim() },
      `已报到，回执号 ${number.value.trim()}`));
    box.append(number, button);
  } else {
    const result = element("textarea", { class: "result", placeholder: "办理结果" });
    // Evidence (照片、视频、扫描的文书): uploaded for this whistle first, then cited by the reply.
    const file = element("input", {
      type: "file", class: "evidence", "aria-label": "证据文件（选填）",
      accept: "image/*,audio/*,video/*,application/pdf",
    });
    const button = element("button", { type: "button", class: "reply" }, "回复");
    button.addEventListener("click", () => submit(whistle, "reply", { result: result.value.trim() },
      "已回复办理结果", file.files[0]));
    box.append(element("span", {}, `回执号 ${whistle.receipt_no}`), result, file, button);
  }
  return box;
}

// One file to the whistle's evidence for the department's reply (multipart, field "file").
async function uploadEvidence(whistle, file) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const form = new FormData();
  form.append("file", file);
  const query = new URLSearchParams({ department_code: whistle.department_code });
  const response = await fetch(`/v1/whistles/${whistle.whistle_id}/evidence?${query}`, {
    method: "POST", headers: { authorization: `Bearer ${token}` }, body: form,
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(explain(response.status, data));
  return data.id;
}

async function submit(whistle, what, body, done, evidence) {
  document.body.dataset.state = "loading";
  try {
    const department = whistle.department_code;
    if (evidence) body = { ...body, evidence: [await uploadEvidence(whistle, evidence)] };
    await call("POST", `/v1/whistles/${whistle.whistle_id}/${what}`, { ...body, department_code: department });
    await load();
    say(`${done}（案件 ${whistle.case_id}）`, "ok");
  } catch (error) {
    say(error.message, "bad");
  } finally {
    document.body.dataset.state = "done";
  }
}

// Why some deadlines are provisional: the calendar's own words while the current year is
// missing, else a general note if a listed clock reaches into a later year not yet entered.
const LATER_YEAR = "部分期限所在年度的节假日安排尚未录入，暂按周一至周五计算，录入后自动重算。";

function showCalendarNotice(calendar, whistles) {
  const notice = $("#calendar-notice");
  const provisional = whistles.some((w) => w.receipt.provisional || w.reply.provisional);
  const text = (calendar && calendar.notice) || (provisional ? LATER_YEAR : "");
  notice.textContent = text;
  notice.hidden = !text;
}

function due(clock) {
  const cell = element("td", { class: "time" }, when(clock.due_at));
  if (clock.provisional) {
    cell.append(element("span", { class: "provisional", title: LATER_YEAR }, "暂定"));
  }
  return cell;
}

function render(whistles) {
  const open = $("#open tbody");
  const overdue = $("#overdue tbody");
  open.replaceChildren();
  overdue.replaceChildren();
  for (const w of whistles) {
    const late = w.status.endsWith("_overdue");
    const subject = element("td", {}, `${w.reason}（${w.reason_code}）`,
      element("span", { class: "ids" }, `案件 ${w.case_id}`),
      element("span", { class: "ids" }, `乡镇 ${w.township_code || "-"} · 事项 ${w.matter_code || "-"}`));
    open.append(element("tr", { "data-whistle-id": w.whistle_id, class: late ? "overdue" : "" },
      element("td", { class: "time" }, when(w.notified_at)),
      subject,
      element("td", {}, URGENCY[w.urgency] || w.urgency),
      due(w.receipt),
      due(w.reply),
      element("td", {}, element("span", { class: `state ${w.status}` }, STATUS[w.status] || w.status)),
      element("td", {}, actions(w))));
    if (late) {
      const receipt = w.status === "receipt_overdue";
      overdue.append(element("tr", { "data-whistle-id": w.whistle_id },
        element("td", {}, element("span", { class: "ids" }, w.case_id)),
        element("td", {}, w.reason),
        element("td", {}, element("span", { class: `state ${w.status}` }, receipt ? "报到" : "回复")),
        due(receipt ? w.receipt : w.reply)));
    }
  }
  const lateCount = whistles.filter((w) => w.status.endsWith("_overdue")).length;
  $("#open-count").textContent = `共 ${whistles.length} 件`;
  $("#overdue-count").textContent = `共 ${lateCount} 件`;
  if (!whistles.length) {
    open.append(element("tr", {}, element("td", { colspan: "7", class: "empty" }, "暂无待办吹哨")));
  }
  $("#open-section").hidden = false;
  $("#overdue-section").hidden = lateCount === 0;
}

// A decision of a joint meeting this department owns, with a form to report it done.
function decisionItem(decision) {
  const item = element("li", { "data-decision-id": decision.decision_id },
    `${decision.task}（时限 ${when(decision.due_at)}）`,
    element("span", { class: `state ${decision.status}` }, DECISION_STATUS[decision.status] || decision.status));
  if (decision.status === "running" || decision.status === "overdue") {
    const result = element("textarea", { class: "decision-result", placeholder: "办理结果" });
    const button = element("button", { type: "button", class: "decision-done" }, "报告办结");
    button.addEventListener("click", () => reportDone(decision, result.value.trim()));
    item.append(element("div", { class: "act" }, result, button));
  } else if (decision.result) {
    item.append(element("span", { class: "ids" }, decision.result));
  }
  return item;
}

async function reportDone(decision, result) {
  document.body.dataset.state = "loading";
  try {
    await call("POST", `/v1/meeting-decisions/${decision.decision_id}/done`, { result });
    await load();
    say(`已报告议定事项办结（案件 ${decision.case_id}）`, "ok");
  } catch (error) {
    say(error.message, "bad");
  } finally {
    document.body.dataset.state = "done";
  }
}

function renderMeetings(meetings, department) {
  const body = $("#meetings tbody");
  body.replaceChildren();
  for (const m of meetings) {
    const mine = m.decisions.filter((d) => d.owner_kind === "department"
      && (!department || d.owner_code === department));
    body.append(element("tr", { "data-meeting-id": m.meeting_id },
      element("td", { class: "time" }, when(m.held_at), element("span", { class: "ids" }, m.place)),
      element("td", {}, element("ul", {}, ...m.agenda.map((a) => element("li", {}, a)))),
      element("td", {}, mine.length ? element("ul", {}, ...mine.map(decisionItem)) : "暂无")));
  }
  $("#meetings-count").textContent = `共 ${meetings.length} 次`;
  $("#meetings-section").hidden = meetings.length === 0;
}

async function load() {
  const department = $("#department").value.trim();
  const query = new URLSearchParams({ state: "open" });
  if (department) query.set("department", department);
  const [data, calendar, meetings] = await Promise.all([
    call("GET", `/v1/whistles?${query}`),
    call("GET", "/v1/calendar").catch(() => null),
    call("GET", "/v1/meetings").catch(() => ({ meetings: [] })),
  ]);
  renderMeetings(meetings.meetings, department);
  render(data.whistles);
  showCalendarNotice(calendar, data.whistles);
  return data.whistles.length;
}

async function lookUp(event) {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  if (!$("#department").value.trim()) $("#department").value = departmentOf(token);
  document.body.dataset.state = "loading";
  try {
    const count = await load();
    say(count ? `共有 ${count} 件待办吹哨` : "暂无待办吹哨", "ok");
  } catch (error) {
    $("#open-section").hidden = true;
    $("#overdue-section").hidden = true;
    $("#meetings-section").hidden = true;
    say(error.message, "bad");
  } finally {
    document.body.dataset.state = "done";
  }
}

// One key per referral being written: kept across retries, a new one once it is answered.
let referralKey = null;

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

function referralMessage(status, body) {
  if (body && body.title === "不予移送") return body.detail;
  if (status === 409) return `该移送已以不同内容提交过，请刷新页面后重新填写${body && body.detail ? `（${body.detail}）` : ""}`;
  return explain(status, body);
}

async function refer(event) {
  event.preventDefault();
  const token = $("#token").value.trim();
  const result = $("#referral-result");
  const department = $("#department").value.trim() || departmentOf(token);
  if (!token || !department) {
    result.textContent = "请先在上方填写访问令牌和部门代码";
    result.className = "bad";
    result.hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  const optional = (id) => $(id).value.trim() || null;
  const body = {
    department_code: department,
    matter_code: $("#referral-matter").value.trim(),
    township_code: $("#referral-township").value.trim(),
    grid_id: optional("#referral-grid"),
    place: optional("#referral-place"),
    facts: $("#referral-facts").value.trim(),
    officer: optional("#referral-officer"),
  };
  referralKey = referralKey || newKey();
  document.body.dataset.state = "loading";
  try {
    const target = await call("GET", "/v1/referral-target");
    let response;
    try {
      response = await fetch(target.url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "idempotency-key": referralKey,
        },
        body: JSON.stringify(body),
      });
    } catch {
      throw new Error("无法连接调度服务，请稍后重试（重试不会重复移送）");
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error(referralMessage(response.status, data));
    referralKey = null;
    const state = data.status === "assigned" ? "已派单" : "待乡镇分拨";
    result.textContent = `已移送：案件 ${data.id}，${state}${data.unit_id ? `，承办单位 ${data.unit_id}` : ""}`;
    result.className = "ok";
    result.dataset.caseId = data.id;
    $("#referral").reset();
  } catch (error) {
    result.textContent = error.message;
    result.className = "bad";
  } finally {
    result.hidden = false;
    document.body.dataset.state = "done";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#referral").addEventListener("submit", refer);
  $("#token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("#lookup").addEventListener("submit", lookUp);
  $("#forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#token").value = "";
    say("令牌已清除", "ok");
  });
});
