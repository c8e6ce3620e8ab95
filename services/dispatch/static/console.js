// The dispatcher console: the triage queue, open cases with their deadline colour, a case's
// page with its timeline, routing explanation and tips (merged ones can be split off), the
// whistle (吹哨), a unit member's own cases, and admission (准入) in two steps: the county
// supervisor's queue (待准入: propose or decline) and the county government's (待批准: approve or
// reject). It reads /v1/console/* and /v1/cases/{id}/tips, and acts through the JSON API with
// If-Match (/v1/cases/{id}/{action}, …/whistle, …/split, …/admission, …/admission/approval),
// as anyone could. Evidence (执法证据) is uploaded to /v1/cases/{id}/evidence and cited by a
// progress or resolution step; each step on the timeline shows who acted, their 执法证 number,
// the place and its evidence, fetched with the token when clicked.
"use strict";

const TOKEN_KEY = "whistle.console.token";
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Filled on sign-in from /v1/console/me: dispatch keeps these words in one place
// (services/dispatch/labels.py), shared with the texts it writes itself.
const STATUS = {};
const URGENCY = {};
const RESOLUTION = {};
const PENALTY = {};
const ACTION = {
  assign: "派单",
  accept: "接单",
  reject: "退单",
  start: "开始办理",
  progress: "记录进展",
  contact: "联系群众",
  resolve: "办结",
  close: "结案",
  reopen: "重新办理",
  whistle: "吹哨",
  split: "拆分",
  assistance: "请求乡镇协助",
};
const CONTACT_METHOD = { phone: "电话", visit: "上门", sms: "短信", wechat: "微信" };
const COLOUR = { green: "正常", yellow: "临近期限", red: "已超期" };
const CLOCK = {
  first_response: "首次响应",
  resolution: "办结",
  referral_acceptance: "移送接收",
  assistance_response: "协助响应",
  legal_review: "法制审核",
};
const CHANNEL = {
  web: "网站",
  open311: "Open311",
  wechat: "微信",
  hotline: "12345 热线",
  grid: "网格员",
  inspection: "巡查发现",
  referral: "县直部门移送",
};
const EVENT = {
  "whistle.case.opened": "立案",
  "whistle.case.triage_required": "转人工分拨",
  "whistle.case.assigned": "派单",
  "whistle.case.accepted": "接单",
  "whistle.case.rejected": "退单",
  "whistle.case.started": "开始办理",
  "whistle.case.progress_recorded": "办理进展",
  "whistle.case.resolved": "办结",
  "whistle.case.closed": "结案",
  "whistle.case.reopened": "重新办理",
  "whistle.case.contacted": "联系群众",
  "whistle.case.merged": "合并重复诉求",
  "whistle.case.split": "拆分",
  "whistle.case.whistle_blown": "吹哨",
  "whistle.case.referred": "县直部门移送",
  "whistle.case.assistance_requested": "请求乡镇协助",
  "whistle.case.admission_proposed": "提出准入",
  "whistle.case.admission_decided": "准入审批",
  "whistle.case.legal_review_requested": "提请法制审核",
  "whistle.case.legal_review_decided": "法制审核",
  "whistle.deadlines.set": "设定时限",
  "whistle.deadline.stopped": "时限停止",
  "whistle.deadline.warning": "时限预警",
  "whistle.deadline.overdue": "超期",
  "whistle.case.chased": "催办",
  "whistle.case.supervised": "督办",
  "whistle.deadline.extension_requested": "申请延期",
  "whistle.deadline.extension_decided": "延期审批",
  "whistle.deadline.recomputed": "时限重算",
  "whistle.meeting.decision_reported": "联席会议议定事项报告办结",
};
// Shown while a case in view has a clock escalation counted Monday to Friday because the
// business calendar lacks a year it reaches into (each such due time is marked 暂定).
const PROVISIONAL_NOTICE =
  "部分期限所在年度的节假日安排尚未录入，期限暂按周一至周五计算（标“暂定”），录入后自动重算。";

// --- small DOM helpers: text goes in as text, never as markup -----------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (selector) => document.querySelector(selector);
const label = (table, key) => (key in table ? table[key] : key);

function when(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
}

function colourBadge(colour) {
  return el(
    "span",
    { class: `badge colour-${colour || "none"}`, "data-colour": colour || "none" },
    colour ? COLOUR[colour] : "无时限",
  );
}

function provisionalTag(provisional) {
  return provisional ? el("span", { class: "provisional", title: PROVISIONAL_NOTICE }, "暂定") : null;
}

function showCalendarNotice(provisional) {
  const box = $("#calendar-notice");
  box.textContent = provisional ? PROVISIONAL_NOTICE : "";
  box.hidden = !provisional;
}

function statusBadge(status) {
  return el("span", { class: `badge status-${status}` }, label(STATUS, status));
}

// --- the server's answers, and its problems in Chinese ------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problemMessage(status, problem));
    this.status = status;
    this.problem = problem;
  }
}

const FOLLOW_UP_PENDING = "https://whistle.example/problems/follow-up-pending";

// An RFC 9457 problem document, said to a dispatcher in Chinese.
function problemMessage(status, problem) {
  const p = problem || {};
  const detail = p.detail ? `（服务器说明：${p.detail}）` : "";
  switch (status) {
    case 401:
      return "未通过身份验证：令牌无效或已过期，请重新粘贴访问令牌。";
    case 403:
      return `无权执行此操作：您的角色或管辖范围不包括这件案件或这个单位。${detail}`;
    case 404:
      return "案件不存在，或不在您的管辖范围内。";
    case 409: {
      // 回访 first: the server's words say until when the case may not be closed.
      if (p.type === FOLLOW_UP_PENDING && p.detail) return p.detail;
      const allowed = (p.allowed_actions || []).map((a) => label(ACTION, a));
      return allowed.length
        ? `案件当前状态不允许此操作。现在可以：${allowed.join("、")}。`
        : "案件当前状态不允许此操作，现在没有可执行的操作。";
    }
    case 412:
      return "案件已被他人修改，请刷新。";
    case 428:
      return "缺少案件版本信息，请刷新后重试。";
    case 422: {
      if (p.refusals && p.refusals.length) {
        const rule = p.title === "Whistle not allowed" ? "不符合吹哨条件" : "不符合职权规定，不能指派";
        return `${rule}：${p.refusals.map((r) => r.reason).join("；")}`;
      }
      const errors = (p.errors || []).map((e) => e.msg || "").filter(Boolean);
      const why = p.title && p.title !== "Unprocessable Entity" ? `${p.title}：` : "";
      return `提交的内容不完整或有误：${why}${p.detail || errors.join("；") || "请检查后重试"}`;
    }
    default:
      return `服务暂时不可用（状态码 ${status}），请稍后再试。${detail}`;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, { method = "GET", body, version } = {}) {
  const headers = { authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (version !== undefined) headers["if-match"] = `"${version}"`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { detail: "无法连接调度服务" });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// --- evidence (执法证据) ------------------------------------------------------------------------

// The answer of a fetch, as api() reads it: its JSON, or an ApiError with the problem.
async function answerOf(request) {
  let response;
  try {
    response = await request;
  } catch {
    throw new ApiError(0, { detail: "无法连接调度服务" });
  }
  if (response.ok) return response;
  throw new ApiError(response.status, await response.json().catch(() => null));
}

// One file to the case's evidence store (multipart, field "file"); the stored file's record.
async function uploadEvidence(caseId, file) {
  const form = new FormData();
  form.append("file", file);
  const request = fetch(`/v1/cases/${caseId}/evidence`, {
    method: "POST",
    headers: { authorization: `Bearer ${token()}` },
    body: form,
  });
  return (await answerOf(request)).json();
}

// A file is served only with the token: fetched, then saved from a blob URL.
async function downloadEvidence(caseId, sha) {
  const request = fetch(`/v1/cases/${caseId}/evidence/${sha}`, {
    headers: { authorization: `Bearer ${token()}` },
  });
  const url = URL.createObjectURL(await (await answerOf(request)).blob());
  const link = el("a", { href: url, download: `证据-${sha.slice(0, 12)}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function evidenceLink(caseId, sha) {
  return el(
    "button",
    {
      type: "button",
      class: "link evidence-link",
      "data-sha256": sha,
      title: sha,
      onclick: () => run(() => downloadEvidence(caseId, sha)),
    },
    `证据 ${sha.slice(0, 8)}…`,
  );
}

// The case's evidence, each with a box to cite it in the next progress or resolution, and the
// upload form for those who may act on the case.
function evidenceSection(page, files) {
  const c = page.case;
  const mayCite = page.actions.includes("progress") || page.actions.includes("resolve");
  const list = files.length
    ? el(
        "ul",
        { id: "evidence-list" },
        files.map((f) =>
          el(
            "li",
            { "data-sha256": f.id },
            mayCite
              ? el("input", { type: "checkbox", name: "cite-evidence", value: f.id, id: `cite-${f.id}`, checked: true })
              : null,
            evidenceLink(c.id, f.id),
            ` ${f.content_type} · ${Math.ceil(f.size / 1024)} KB · ${f.uploaded_by} 上传于 ${when(f.uploaded_at)}`,
          ),
        ),
      )
    : el("p", { class: "empty", id: "evidence-list" }, "尚未上传证据。");
  const file = el("input", { id: "evidence-file", type: "file", accept: "image/*,audio/*,video/*,application/pdf", required: true });
  const form = mayCite
    ? el(
        "form",
        {
          id: "evidence-upload",
          onsubmit: (event) => {
            event.preventDefault();
            run(async () => {
              const stored = await uploadEvidence(c.id, file.files[0]);
              showNotice(`证据已上传（${stored.id.slice(0, 8)}…），勾选后随进展或办结一并提交。`);
              await route();
            });
          },
        },
        el("label", { for: "evidence-file" }, "上传证据（照片、录音、视频或扫描的文书 PDF）"),
        file,
        el("button", { type: "submit", id: "do-upload" }, "上传"),
      )
    : null;
  return el(
    "section",
    { id: "evidence", "aria-labelledby": "evidence-title" },
    el("h3", { id: "evidence-title" }, "执法证据"),
    mayCite ? el("p", { class: "detail" }, "已勾选的证据随下一次“记录进展”或“办结”提交，执法证号与地点一并记录。") : null,
    list,
    form,
  );
}

// The steps on the ground whose evidence is in this case's store (a department's reply to a
// whistle cites its own files, which dispatch does not hold).
const FIELD_STEPS = new Set([
  "whistle.case.progress_recorded",
  "whistle.case.resolved",
  "whistle.case.legal_review_requested",
]);

// The evidence boxes ticked on the case page: what a progress or resolution step cites.
function citedEvidence() {
  return [...document.querySelectorAll("input[name=cite-evidence]:checked")].map((box) => box.value);
}

// Where the officer stands (optional): typed in, or the device's position on request. The case's
// grid is recorded with every step anyway.
function pointFields() {
  const lat = el("input", { id: "step-lat", type: "number", step: "any", min: -90, max: 90 });
  const lon = el("input", { id: "step-lon", type: "number", step: "any", min: -180, max: 180 });
  const locate = el(
    "button",
    {
      type: "button",
      class: "secondary",
      id: "step-locate",
      onclick: () =>
        navigator.geolocation &&
        navigator.geolocation.getCurrentPosition(
          (at) => {
            lat.value = at.coords.latitude.toFixed(6);
            lon.value = at.coords.longitude.toFixed(6);
          },
          () => showError("无法获取当前位置，请手动填写或留空（将记录案件所在网格）。"),
        ),
    },
    "使用当前位置",
  );
  return el(
    "fieldset",
    { id: "step-point" },
    el("legend", {}, "执法地点（选填，纬度 / 经度；不填则记录案件所在网格）"),
    el("label", { for: "step-lat" }, "纬度"),
    lat,
    el("label", { for: "step-lon" }, "经度"),
    lon,
    locate,
  );
}

// The point typed in, as a step's body gives it; nothing when either half is empty.
function stepPoint() {
  const lat = document.getElementById("step-lat");
  const lon = document.getElementById("step-lon");
  if (!lat || !lon || lat.value === "" || lon.value === "") return {};
  return { point: { lat: Number(lat.value), lon: Number(lon.value) } };
}

// --- page state ----------------------------------------------------------------------------

let me = null;
// The townships, units, matters, departments and whistle reasons of each county the caller
// reads, by division code (/v1/console/me?county=): a form about a case offers its own
// county's, whichever county the caller's token names first (a city token reads them all).
let countyForms = {};

async function loadCountyForms(codes) {
  const missing = [...new Set(codes)].filter((code) => code && !countyForms[code]);
  const loaded = await Promise.all(missing.map((code) => api(`/v1/console/me?county=${code}`)));
  for (const forms of loaded) countyForms[forms.county.code] = forms;
}

const formsOf = (county) => countyForms[county] || me;

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function showNotice(message) {
  const box = $("#notice");
  box.textContent = message;
  box.hidden = !message;
}

function setState(state) {
  document.body.dataset.state = state;
}

async function run(task) {
  setState("loading");
  showError("");
  try {
    await task();
  } catch (error) {
    showError(error instanceof ApiError ? error.message : `页面出错：${error.message}`);
  } finally {
    setState("done");
  }
}

function roleLine(data) {
  const roles = {
    dispatcher: "调度员",
    unit_member: "承办单位人员",
    county_supervisor: "县级督办",
    county_government: "县政府",
    legal_reviewer: "法制审核人员",
  };
  const where = [
    ...data.townships.map((t) => t.name),
    ...(data.roles.includes("unit_member") ? data.units.map((u) => u.name) : []),
  ];
  return `当前身份：${data.subject}（${data.roles.map((r) => label(roles, r)).join("、")}${
    where.length ? ` · ${where.slice(0, 4).join("、")}${where.length > 4 ? " 等" : ""}` : ""
  }）`;
}

// ``county``: the county whose lists the forms about no case offer (the case list's filters,
// the inspection form), which a city token (county:*) chooses; none: the token's own.
async function signIn(county) {
  me = await api(county ? `/v1/console/me?county=${county}` : "/v1/console/me");
  countyForms = { [me.county.code]: me };
  const choice = $("#county");
  choice.replaceChildren(...me.counties.map((c) => el("option", { value: c.code }, c.name)));
  choice.value = me.county.code;
  $("#county-choice").hidden = me.counties.length < 2;
  Object.assign(STATUS, me.labels.status);
  Object.assign(URGENCY, me.labels.urgency);
  Object.assign(RESOLUTION, me.labels.resolution);
  Object.assign(PENALTY, me.labels.penalty);
  $("#who").textContent = roleLine(me);
  $("#tabs").hidden = false;
  const dispatching = me.roles.includes("dispatcher") || me.roles.includes("county_supervisor");
  $("#tab-triage").hidden = !dispatching;
  $("#tab-open").hidden = !dispatching;
  $("#tab-mine").hidden = !me.roles.includes("unit_member");
  $("#tab-admission").hidden = !me.roles.includes("county_supervisor");
  $("#tab-approval").hidden = !(
    me.roles.includes("county_government") || me.roles.includes("county_supervisor")
  );
  $("#tab-legal-review").hidden = !(
    me.roles.includes("legal_reviewer") || me.roles.includes("county_supervisor")
  );
  $("#tab-inspections").hidden = !(me.roles.includes("unit_member") || dispatching);
}

// --- views -------------------------------------------------------------------------------

function unitsOf(forms, township) {
  return forms.units.filter((u) => u.township === township);
}

// The matter choice: the classifier's suggestions first, then the whole catalogue (of the
// county whose ``forms`` they are).
function matterSelect(id, suggestions, chosen, forms) {
  const select = el("select", { id, class: "matter", required: true });
  if (suggestions.length) {
    select.append(
      el(
        "optgroup",
        { label: "系统建议" },
        suggestions.map((s) =>
          el(
            "option",
            { value: s.matter_code, "data-unit": s.unit_id || "" },
            `${s.matter_code} ${s.name}（得分 ${s.score}）`,
          ),
        ),
      ),
    );
  } else {
    select.append(el("option", { value: "" }, "请选择事项"));
  }
  select.append(
    el(
      "optgroup",
      { label: "事项清单" },
      forms.matters.map((m) => el("option", { value: m.code }, `${m.code} ${m.name}`)),
    ),
  );
  if (chosen) select.value = chosen;
  return select;
}

function unitSelect(id, units, chosen) {
  const select = el(
    "select",
    { id, class: "unit", required: true },
    el("option", { value: "" }, "请选择承办单位"),
    units.map((u) => el("option", { value: u.id }, u.name)),
  );
  if (chosen) select.value = chosen;
  return select;
}

// Choosing a suggested matter proposes the unit routing would pick for it.
function linkMatterToUnit(matter, unit) {
  matter.addEventListener("change", () => {
    const suggested = matter.selectedOptions[0] && matter.selectedOptions[0].dataset.unit;
    if (suggested) unit.value = suggested;
  });
}

async function act(caseId, action, version, body) {
  const answer = await api(`/v1/cases/${caseId}/${action}`, {
    method: "POST",
    body: body || {},
    version,
  });
  showNotice(`已${label(ACTION, action)}：案件现为「${label(STATUS, answer.status)}」。`);
  return answer;
}

function assignForm(row, suggestions, units, prefix) {
  const first = suggestions[0];
  const chosen = row.matter_code || (first && first.matter_code);
  const matter = matterSelect(`${prefix}-matter`, suggestions, chosen, formsOf(row.county));
  const unit = unitSelect(`${prefix}-unit`, units, first && first.unit_id);
  linkMatterToUnit(matter, unit);
  return el(
    "form",
    {
      class: "assign",
      "data-action": "assign",
      onsubmit: (event) => {
        event.preventDefault();
        run(async () => {
          if (!matter.value || !unit.value) throw new Error("请选择事项和承办单位");
          await act(row.id, "assign", row.version, { matter_code: matter.value, unit_id: unit.value });
          await route();
        });
      },
    },
    el("label", { for: matter.id }, "事项"),
    matter,
    el("label", { for: unit.id }, "承办单位"),
    unit,
    el("button", { type: "submit" }, "派单"),
  );
}

// A case waiting for a decision: the citizen's words, why it waits, the suggestions (for a
// case waiting for its matter and unit), a form.
function waitingCard(row, form) {
  return el(
    "li",
    { class: "card", "data-case-id": row.id },
    el(
      "div",
      { class: "card-head" },
      statusBadge(row.status),
      el("span", {}, `${row.township_name || "未定位"} · 受理于 ${when(row.created_at)}`),
      el("a", { href: `#/case/${row.id}` }, "查看详情"),
    ),
    el("p", { class: "tip-text" }, row.text || "（无诉求原文）"),
    row.reason && el("p", { class: "detail" }, row.reason),
    row.suggestions && el(
      "div",
      { class: "suggestions" },
      el("span", { class: "detail" }, "系统建议事项："),
      row.suggestions.length
        ? el(
            "ol",
            {},
            row.suggestions.map((s) =>
              el(
                "li",
                { class: "suggestion" },
                el("code", {}, s.matter_code),
                ` ${s.name}`,
                el("span", { class: "score" }, `得分 ${s.score}`),
                s.unit_name && el("span", { class: "detail" }, ` → ${s.unit_name}`),
              ),
            ),
          )
        : el("span", {}, "未命中关键词，请人工选择事项"),
    ),
    form,
  );
}

async function queueView(path, title, id, empty, form) {
  const rows = await api(path);
  await loadCountyForms(rows.map((row) => row.county));
  const view = $("#view");
  view.replaceChildren(el("h2", {}, `${title}（${rows.length}）`));
  view.append(
    rows.length
      ? el("ul", { id, class: "cards" }, rows.map((row, n) => waitingCard(row, form(row, n))))
      : el("p", { class: "empty" }, empty),
  );
}

function triageView() {
  return queueView("/v1/console/triage", "待分拨", "triage-list", "待分拨队列为空。", (row, n) =>
    assignForm(row, row.suggestions, unitsOf(formsOf(row.county), row.township_code), `t${n}`),
  );
}

// 准入, first step: the county supervisor proposes that the township carry an out-of-list
// matter (the unit, the approving body and document number, why), or declines it.
function admissionForms(row, n) {
  const first = row.suggestions[0];
  const forms = formsOf(row.county);
  const matter = matterSelect(`a${n}-matter`, row.suggestions, first && first.matter_code, forms);
  // The township's own units, or a county department's (which needs no admission but may be
  // proposed all the same), of the case's county.
  const units = forms.units.filter((u) => u.township === row.township_code || !u.township);
  const unit = unitSelect(`a${n}-unit`, units, first && first.unit_id);
  linkMatterToUnit(matter, unit);
  const body = el("input", { id: `a${n}-body`, type: "text", maxlength: 100, value: "县人民政府" });
  const number = el("input", { id: `a${n}-number`, type: "text", maxlength: 100 });
  const why = el("input", { id: `a${n}-why`, type: "text", maxlength: 500 });
  const reason = el("input", { id: `a${n}-reason`, type: "text", maxlength: 500 });
  const decide = (payload, done) =>
    run(async () => {
      const answer = await api(`/v1/cases/${row.id}/admission`, {
        method: "POST",
        body: payload,
        version: row.version,
      });
      showNotice(`${done}：案件现为「${label(STATUS, answer.status)}」。`);
      await route();
    });
  return el(
    "div",
    { class: "admission" },
    el(
      "form",
      {
        class: "assign",
        "data-action": "propose",
        onsubmit: (event) => {
          event.preventDefault();
          if (!matter.value || !unit.value) return showError("请选择事项和承办单位");
          if (!body.value.trim() || !number.value.trim() || !why.value.trim()) {
            return showError("提出准入须填写批准机关、批准文号和理由");
          }
          decide(
            {
              decision: "propose",
              matter_code: matter.value,
              unit_id: unit.value,
              approving_body: body.value.trim(),
              document_no: number.value.trim(),
              reason: why.value.trim(),
            },
            "已提出准入，待县政府批准",
          );
        },
      },
      el("label", { for: matter.id }, "事项"),
      matter,
      el("label", { for: unit.id }, "承办单位"),
      unit,
      el("label", { for: body.id }, "批准机关"),
      body,
      el("label", { for: number.id }, "批准文号"),
      number,
      el("label", { for: why.id }, "准入理由"),
      why,
      el("button", { type: "submit" }, "提出准入"),
    ),
    el(
      "form",
      {
        class: "assign",
        "data-action": "decline",
        onsubmit: (event) => {
          event.preventDefault();
          if (!reason.value.trim()) return showError("不予准入须说明理由（将告知群众）");
          decide({ decision: "decline", reason: reason.value.trim() }, "已不予准入");
        },
      },
      el("label", { for: reason.id }, "不予准入理由"),
      reason,
      el("button", { type: "submit", class: "secondary" }, "不予准入"),
    ),
  );
}

function admissionView() {
  return queueView(
    "/v1/console/admission",
    "待准入",
    "admission-list",
    "没有等待准入的清单外事项。",
    admissionForms,
  );
}

// Terms and what they say, as a list of facts on a card.
function factList(pairs) {
  return el("dl", { class: "proposal" }, pairs.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

// A second role's decision on what another proposed: approve, or send it back with an opinion
// (required then). ``how`` names the endpoint, the role, the words and the notices.
function secondStepForm(row, n, facts, how) {
  if (!me.roles.includes(how.role)) return facts;
  const opinion = el("input", { id: `${how.prefix}${n}-opinion`, type: "text", maxlength: 1000 });
  const decide = (decision) =>
    run(async () => {
      const text = opinion.value.trim();
      if (decision === how.sendBack && !text) throw new Error(how.opinionNeeded);
      const answer = await api(`/v1/cases/${row.id}/${how.path}`, {
        method: "POST",
        body: text ? { decision, opinion: text } : { decision },
        version: row.version,
      });
      const done = decision === "approve" ? how.approved : how.sentBack;
      showNotice(`${done}：案件现为「${label(STATUS, answer.status)}」。`);
      await route();
    });
  return el(
    "div",
    { class: "admission" },
    facts,
    el(
      "form",
      {
        class: "assign",
        "data-action": how.action,
        onsubmit: (event) => {
          event.preventDefault();
          const back = event.submitter && event.submitter.value === how.sendBack;
          decide(back ? how.sendBack : "approve");
        },
      },
      el("label", { for: opinion.id }, how.opinionLabel),
      opinion,
      el("button", { type: "submit", value: "approve" }, how.approveButton),
      el("button", { type: "submit", value: how.sendBack, class: "secondary" }, how.sendBackButton),
    ),
  );
}

// 准入, second step: the county government approves the proposal (the case is assigned to the
// proposed unit) or rejects it with its opinion (back to 待准入). The supervisor only reads.
function approvalForms(row, n) {
  const p = row.proposal;
  const facts = p
    ? factList([
        ["事项", `${p.matter_code} ${p.matter_name || ""}`],
        ["承办单位", p.unit_name || p.unit_id],
        ["批准机关", p.approving_body],
        ["批准文号", p.document_no],
        ["准入理由", p.reason],
        ["提议人", `${p.proposed_by} · ${when(p.proposed_at)}`],
      ])
    : null;
  return secondStepForm(row, n, facts, {
    role: "county_government",
    prefix: "g",
    path: "admission/approval",
    action: "approval",
    sendBack: "reject",
    opinionLabel: "审批意见",
    opinionNeeded: "不予批准须填写审批意见",
    approveButton: "批准准入",
    sendBackButton: "不予批准",
    approved: "已批准准入",
    sentBack: "已不予批准",
  });
}

function approvalView() {
  return queueView(
    "/v1/console/approval",
    "待批准",
    "approval-list",
    "没有等待县政府批准的准入提议。",
    approvalForms,
  );
}

// 法制审核: a penalty decision on the 重大执法决定 list waits for a legal reviewer, who approves
// it (it takes effect: the case is resolved) or returns it with an opinion (in progress again).
// The county supervisor only reads.
function legalReviewForms(row, n) {
  const facts = factList([
    ["事项", `${row.matter_code || ""} ${row.matter_name || ""}`],
    ["承办单位", row.unit_name || row.unit_id || "—"],
    ["执法名义", row.acting_in_name_of || "—"],
    ["执法依据", row.legal_basis || "—"],
    ["处罚决定", row.penalty_words],
    ["属于重大执法决定", row.major_decisions.join("；")],
    ["办理情况", row.note],
    ["提请人", `${row.requested_by} · ${when(row.requested_at)}`],
    ["审核期限", reviewDue(row)],
  ]);
  return secondStepForm(row, n, facts, {
    role: "legal_reviewer",
    prefix: "r",
    path: "legal-review",
    action: "legal-review",
    sendBack: "return",
    opinionLabel: "审核意见",
    opinionNeeded: "退回须填写审核意见",
    approveButton: "审核通过",
    sendBackButton: "退回",
    approved: "已审核通过，处罚决定生效",
    sentBack: "已退回承办单位",
  });
}

// The review's own clock (escalation's legal_review): its due time, and 已超期 once past it.
function reviewDue(row) {
  if (!row.review_due_at) return "—";
  const state = row.review_colour ? `（${label(COLOUR, row.review_colour)}）` : "";
  return `${when(row.review_due_at)}${state}`;
}

function legalReviewView() {
  return queueView(
    "/v1/console/legal-review",
    "待法制审核",
    "legal-review-list",
    "没有等待法制审核的处罚决定。",
    legalReviewForms,
  );
}

// 综合查一次, 定岗巡查: the inspection tasks of the last two weeks — a unit's member sees their
// unit's, a dispatcher their township's. The unit's member completes a task with what was found
// (it becomes a case, reported on channel inspection) or with nothing found; both are recorded.
function inspectionForm(task) {
  if (!me.roles.includes("unit_member") || task.state === "done") return null;
  const id = `i-${task.id}`;
  const text = el("textarea", { id: `${id}-text`, rows: 2, maxlength: 4000 });
  const grid = el(
    "select",
    { id: `${id}-grid` },
    task.finding_grids.map((g) => el("option", { value: g.id }, g.name)),
  );
  const complete = (body, done) =>
    run(async () => {
      await api(`/v1/inspections/${task.id}/completion`, { method: "POST", body });
      showNotice(done);
      await route();
    });
  return el(
    "form",
    {
      class: "action",
      onsubmit: (event) => {
        event.preventDefault();
        if (!text.value.trim()) return showError("请填写发现的问题，或点击“未发现问题”");
        complete(
          { findings: [{ text: text.value.trim(), grid_id: grid.value }] },
          "巡查结果已提交，发现的问题已转为案件",
        );
      },
    },
    el("label", { for: `${id}-text` }, "发现的问题"),
    text,
    el("label", { for: `${id}-grid` }, "所在网格"),
    grid,
    el("button", { type: "submit", id: `${id}-found` }, "提交发现的问题"),
    el(
      "button",
      {
        type: "button",
        class: "secondary",
        id: `${id}-none`,
        onclick: () => complete({ none_found: true }, "已记录：本次巡查未发现问题"),
      },
      "未发现问题",
    ),
  );
}

function inspectionCard(task) {
  const findings = task.findings || [];
  return el(
    "li",
    { class: "card", "data-task-id": task.id, "data-state": task.state },
    el(
      "div",
      { class: "card-head" },
      el("span", { class: `badge inspection-${task.state}` }, task.state_text),
      el("span", {}, `${task.due_on} · ${task.kind_text} · ${task.name}`),
    ),
    factList([
      ["巡查单位", task.unit_name],
      ["巡查网格", task.grid_names.length ? task.grid_names.join("、") : "全乡镇"],
      ...(task.state === "done"
        ? [
            ["完成", `${task.completed_by} · ${when(task.completed_at)}`],
            ["巡查结果", findings.length ? findings.map((f) => f.text).join("；") : "未发现问题"],
          ]
        : []),
    ]),
    inspectionForm(task),
  );
}

async function inspectionsView() {
  const tasks = await api("/v1/inspections");
  $("#view").replaceChildren(
    el("h2", {}, `巡查任务（${tasks.length}）`),
    el("p", { class: "detail" }, "近两周的综合查一次与定岗巡查任务；发现的问题将作为“巡查发现”案件办理。"),
    tasks.length
      ? el("ul", { id: "inspection-list", class: "cards" }, tasks.map(inspectionCard))
      : el("p", { class: "empty" }, "近两周没有巡查任务。"),
  );
}

function filterBar(params) {
  const status = el(
    "select",
    { id: "filter-status" },
    el("option", { value: "" }, "全部未结案"),
    Object.entries(STATUS)
      .filter(([k]) => k !== "closed")
      .map(([k, v]) => el("option", { value: k }, v)),
  );
  const unit = el(
    "select",
    { id: "filter-unit" },
    el("option", { value: "" }, "全部单位"),
    me.units.map((u) => el("option", { value: u.id }, u.name)),
  );
  const matter = el(
    "select",
    { id: "filter-matter" },
    el("option", { value: "" }, "全部事项"),
    me.matters.map((m) => el("option", { value: m.code }, `${m.code} ${m.name}`)),
  );
  status.value = params.get("status") || "";
  unit.value = params.get("unit_id") || "";
  matter.value = params.get("matter_code") || "";
  const apply = () => {
    const next = new URLSearchParams();
    if (status.value) next.set("status", status.value);
    if (unit.value) next.set("unit_id", unit.value);
    if (matter.value) next.set("matter_code", matter.value);
    location.hash = `#/open?${next}`;
  };
  for (const select of [status, unit, matter]) select.addEventListener("change", apply);
  return el(
    "div",
    { class: "filters", role: "group", "aria-label": "筛选" },
    el("label", { for: "filter-status" }, "状态"),
    status,
    el("label", { for: "filter-unit" }, "承办单位"),
    unit,
    el("label", { for: "filter-matter" }, "事项"),
    matter,
  );
}

function caseTable(id, rows, extra) {
  return el(
    "table",
    { id },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["时限", "状态", "事项", "承办单位", "群众反映", "最近期限", "操作"].map((h) =>
          el("th", { scope: "col" }, h),
        ),
      ),
    ),
    el(
      "tbody",
      {},
      rows.map((row) =>
        el(
          "tr",
          { "data-case-id": row.id, "data-status": row.status, "data-colour": row.colour || "none" },
          el("td", { "data-label": "时限" }, colourBadge(row.colour)),
          el("td", { "data-label": "状态", class: "status" }, statusBadge(row.status)),
          el("td", { "data-label": "事项" }, row.matter_name || row.matter_code || "—"),
          el("td", { "data-label": "承办单位" }, row.unit_name || "—"),
          el("td", { "data-label": "群众反映", class: "tip-text" }, row.text || "—"),
          el("td", { "data-label": "最近期限" }, when(row.due_at), provisionalTag(row.provisional)),
          el(
            "td",
            { "data-label": "操作", class: "row-actions" },
            el("a", { href: `#/case/${row.id}` }, "查看"),
            extra ? extra(row) : null,
          ),
        ),
      ),
    ),
  );
}

async function openView(params) {
  const query = new URLSearchParams();
  for (const key of ["status", "unit_id", "matter_code"]) {
    if (params.get(key)) query.set(key, params.get(key));
  }
  const rows = await api(`/v1/console/cases?${query}`);
  showCalendarNotice(rows.some((row) => row.provisional));
  $("#view").replaceChildren(
    el("h2", {}, `办理中（${rows.length}）`),
    filterBar(params),
    rows.length ? caseTable("open-table", rows) : el("p", { class: "empty" }, "没有符合条件的案件。"),
  );
}

async function mineView() {
  const rows = await api("/v1/console/cases");
  showCalendarNotice(rows.some((row) => row.provisional));
  const quick = (row) =>
    row.status === "assigned"
      ? el(
          "button",
          {
            type: "button",
            class: "accept",
            onclick: () =>
              run(async () => {
                await act(row.id, "accept", row.version);
                await route();
              }),
          },
          "接单",
        )
      : null;
  const decisions = me.roles.includes("unit_member") ? await api("/v1/meeting-decisions") : [];
  $("#view").replaceChildren(
    el("h2", {}, `我的案件（${rows.length}）`),
    el("p", { class: "detail" }, "退单、办结请进入案件详情填写原因或办理结果。"),
    rows.length ? caseTable("mine-table", rows, quick) : el("p", { class: "empty" }, "暂无指派给本单位的案件。"),
    decisions.length ? decisionsSection(decisions) : null,
  );
}

// 联席会议议定事项: the joint meetings' decisions the member's unit owns, each reported done here
// (POST /v1/meeting-decisions/{id}/done); escalation then stops its clock.
function decisionState(d) {
  if (d.done_at) return d.on_time ? "按时办结" : "逾期办结";
  if (d.reported_at) return "已报告办结";
  return new Date(d.due_at) < new Date() ? "已超期" : "办理中";
}

function decisionsSection(decisions) {
  const row = (d) => {
    const result = el("textarea", { class: "decision-result", rows: 2, placeholder: "办理结果" });
    const report = el(
      "button",
      {
        type: "button",
        class: "decision-done",
        onclick: () =>
          run(async () => {
            await api(`/v1/meeting-decisions/${d.decision_id}/done`, {
              method: "POST",
              body: { result: result.value.trim() },
            });
            showNotice("已报告议定事项办结");
            await route();
          }),
      },
      "报告办结",
    );
    return el(
      "tr",
      { "data-decision-id": d.decision_id },
      el("td", {}, d.task),
      el("td", {}, el("a", { href: `#/case/${d.case_id}` }, d.case_id.slice(0, 8))),
      el("td", {}, when(d.due_at)),
      el("td", { class: "decision-state" }, decisionState(d)),
      el("td", {}, d.reported_at ? d.result || "" : [result, report]),
    );
  };
  return el(
    "section",
    { id: "decisions" },
    el("h2", {}, `联席会议议定事项（${decisions.length}）`),
    el(
      "table",
      { id: "decisions-table" },
      el("thead", {}, el("tr", {}, ["议定事项", "案件", "完成时限", "状态", "办理结果"].map((h) => el("th", {}, h)))),
      el("tbody", {}, decisions.map(row)),
    ),
  );
}

function textField(id, text, multiline) {
  return [
    el("label", { for: id }, text),
    multiline
      ? el("textarea", { id, rows: 2, required: true, maxlength: multiline })
      : el("input", { id, type: "text", required: true }),
  ];
}

// Words of the case's county (``forms``), or of the caller's.
const departmentName = (code, forms = me) =>
  (forms.departments.find((d) => d.code === code) || { name: code }).name;
const whistleReason = (code, forms = me) =>
  (forms.whistle_reasons.find((r) => r.code === code) || { label: code }).label;

// 吹哨: summon county departments (the matter's own listed first, its lead ticked), for a
// reason the county's rules name; the server judges it and says every rule that refuses it.
// 联席会议: what routine whistles did not settle goes to the township's joint meeting, which its
// leader convenes on escalation's township page; the link carries this case.
function meetingLink(page) {
  const where = me.meeting_page.startsWith(":")
    ? `${location.protocol}//${location.hostname}${me.meeting_page}`
    : me.meeting_page;
  const link = el(
    "a",
    { id: "to-meeting", href: `${where}?case=${page.case.id}`, target: "_blank", rel: "noopener" },
    "提请乡镇联席会议",
  );
  return el("p", { class: "detail" }, "常规吹哨未能解决的，可", link, "（由乡镇领导在联席会议工作台召开）。");
}

function whistleForm(page) {
  const c = page.case;
  const forms = formsOf(c.county);
  if (!forms.whistle_reasons.length) return el("p", { class: "detail" }, "本县未配置吹哨规则，暂不能吹哨。");
  const responsible = page.responsible_departments;
  const ordered = [
    ...responsible.map((code) => forms.departments.find((d) => d.code === code)).filter(Boolean),
    ...forms.departments.filter((d) => !responsible.includes(d.code)),
  ];
  const boxes = ordered.map((d) =>
    el(
      "label",
      { class: "check" },
      el("input", {
        type: "checkbox",
        name: "whistle-department",
        value: d.code,
        checked: d.code === responsible[0],
      }),
      ` ${d.name}`,
      responsible.includes(d.code) ? el("span", { class: "detail" }, "（本事项责任部门）") : null,
    ),
  );
  const code = el(
    "select",
    { id: "whistle-reason-code", required: true },
    forms.whistle_reasons.map((r) => el("option", { value: r.code, title: r.description }, r.label)),
  );
  const hint = el("p", { class: "detail", id: "whistle-reason-hint" });
  const describeReason = () => {
    const chosen = forms.whistle_reasons.find((r) => r.code === code.value);
    hint.textContent = chosen ? chosen.description : "";
  };
  code.addEventListener("change", describeReason);
  describeReason();
  const reason = el("textarea", { id: "whistle-reason", rows: 2, required: true, maxlength: 500 });
  return el(
    "form",
    {
      class: "action",
      "data-action": "whistle",
      onsubmit: (event) => {
        event.preventDefault();
        const departments = [...document.querySelectorAll('input[name="whistle-department"]:checked')].map(
          (box) => box.value,
        );
        run(async () => {
          if (!departments.length) throw new Error("请至少选择一个县直部门");
          await api(`/v1/cases/${c.id}/whistle`, {
            method: "POST",
            body: { departments, reason_code: code.value, reason: reason.value.trim() },
            version: c.version,
          });
          const names = departments.map((d) => departmentName(d, forms));
          showNotice(`已吹哨：召集 ${names.join("、")}。`);
          await route();
        });
      },
    },
    el("fieldset", { id: "whistle-departments" }, el("legend", {}, "召集县直部门"), boxes),
    el("label", { for: code.id }, "吹哨理由"),
    code,
    hint,
    el("label", { for: reason.id }, "情况说明"),
    reason,
    el("button", { type: "submit", id: "do-whistle" }, "吹哨"),
  );
}

// The case's tips: its own, then those merged into it; a merged one may be split off.
function tipsSection(page, tips) {
  const c = page.case;
  const mayHaveSplit = page.actions.includes("split");
  const how = (t) => {
    if (t.joined_by === "opening") return "原始诉求";
    const where = t.rule === "same_grid" ? "同一网格" : `相距 ${t.distance_m} 米`;
    return `合并的重复诉求（${where}，${when(t.joined_at)}）`;
  };
  const splitForm = (t, n) => {
    const reason = el("input", { id: `split-reason-${n}`, type: "text", required: true, maxlength: 500 });
    return el(
      "form",
      {
        class: "split",
        "data-action": "split",
        onsubmit: (event) => {
          event.preventDefault();
          run(async () => {
            const answer = await api(`/v1/cases/${c.id}/split`, {
              method: "POST",
              body: { tip_id: t.tip_id, reason: reason.value.trim() },
              version: c.version,
            });
            showNotice(`已拆分：该诉求另立为案件 ${answer.split_case_id}。`);
            await route();
          });
        },
      },
      el("label", { for: reason.id }, "拆分原因"),
      reason,
      el("button", { type: "submit" }, "拆分为新案件"),
    );
  };
  return el(
    "section",
    { id: "tips", "aria-labelledby": "tips-title" },
    el("h3", { id: "tips-title" }, `诉求（${tips.length} 条）`),
    el(
      "ol",
      {},
      tips.map((t, n) =>
        el(
          "li",
          { "data-tip-id": t.tip_id, "data-joined-by": t.joined_by },
          el("strong", {}, how(t)),
          el("p", { class: "tip-text" }, t.text || "（无诉求原文）"),
          t.split_case_id
            ? el("p", { class: "detail" }, `已于 ${when(t.left_at)} 拆分为 `, el("a", { href: `#/case/${t.split_case_id}` }, "新案件"))
            : null,
          t.joined_by === "merge" && !t.left_at && mayHaveSplit ? splitForm(t, n) : null,
        ),
      ),
    ),
  );
}

// One form per action the caller may take now; each posts with the version shown.
function actionForms(page) {
  const c = page.case;
  const forms = [];
  const submit = (action, body) =>
    run(async () => {
      await act(c.id, action, c.version, body && body());
      await route();
    });
  const form = (action, fields, body, note) =>
    el(
      "form",
      {
        class: "action",
        "data-action": action,
        onsubmit: (event) => {
          event.preventDefault();
          submit(action, body);
        },
      },
      note && el("p", { class: "detail" }, note),
      fields,
      el("button", { type: "submit", id: `do-${action}` }, label(ACTION, action)),
    );
  for (const action of page.actions) {
    if (action === "assign") {
      const matter = matterSelect("assign-matter", page.suggestions, c.matter_code, formsOf(c.county));
      const first = page.suggestions[0];
      const unit = unitSelect("assign-unit", page.assignable_units, first && first.unit_id);
      linkMatterToUnit(matter, unit);
      forms.push(
        form(
          "assign",
          [el("label", { for: "assign-matter" }, "事项"), matter, el("label", { for: "assign-unit" }, "承办单位"), unit],
          () => ({ matter_code: matter.value, unit_id: unit.value }),
        ),
      );
    } else if (action === "reject" || action === "reopen") {
      const id = `${action}-reason`;
      forms.push(
        form(action, textField(id, action === "reject" ? "退单原因" : "重新办理原因", 500), () => ({
          reason: document.getElementById(id).value,
        })),
      );
    } else if (action === "whistle") {
      forms.push(whistleForm(page), meetingLink(page));
    } else if (action === "split") {
      continue; // beside each merged tip, in the tips section
    } else if (action === "assistance") {
      // 协助: the township's enforcement team becomes a supporting unit, with this task.
      forms.push(
        form("assistance", textField("assistance-task", "协助任务", 2000), () => ({
          task: document.getElementById("assistance-task").value,
        }), "请本案所在乡镇综合行政执法队协助办理，对方须在首次响应时限内响应。"),
      );
    } else if (action === "progress") {
      forms.push(
        form("progress", textField("progress-note", "进展说明", 2000), () => ({
          note: document.getElementById("progress-note").value,
          evidence: citedEvidence(),
          ...stepPoint(),
        })),
      );
    } else if (action === "contact") {
      // 联系群众: 响应率 counts the first contact by the first-response deadline.
      const method = el(
        "select",
        { id: "contact-method", required: true },
        Object.entries(CONTACT_METHOD).map(([k, v]) => el("option", { value: k }, v)),
      );
      forms.push(
        form(
          "contact",
          [
            el("label", { for: "contact-method" }, "联系方式"),
            method,
            el("label", { for: "contact-note" }, "联系情况（选填）"),
            el("input", { id: "contact-note", type: "text", maxlength: 500 }),
          ],
          () => {
            const note = document.getElementById("contact-note").value.trim();
            return { contacted_at: new Date().toISOString(), method: method.value, ...(note ? { note } : {}) };
          },
          "记录现在已联系群众。",
        ),
      );
    } else if (action === "resolve") {
      const kind = el(
        "select",
        { id: "resolve-kind", required: true },
        Object.entries(RESOLUTION).map(([k, v]) => el("option", { value: k }, v)),
      );
      const due = el("input", { id: "resolve-due", type: "date" });
      // 立案处罚 states its penalty: the entrusted ceiling and the 重大执法决定 list judge it.
      const kinds = Object.entries(PENALTY).map(([k, v]) =>
        el("label", { class: "check" }, el("input", { type: "checkbox", name: "penalty-kind", value: k }), v),
      );
      const fine = el("input", { id: "resolve-fine", type: "number", min: 1, step: 1 });
      const penalty = el(
        "fieldset",
        { id: "resolve-penalty", hidden: true },
        el("legend", {}, "处罚种类（立案处罚时必选）"),
        kinds,
        el("label", { for: "resolve-fine" }, "罚款金额（元，处以罚款时必填）"),
        fine,
      );
      kind.addEventListener("change", () => {
        penalty.hidden = kind.value !== "penalised";
      });
      penalty.hidden = kind.value !== "penalised";
      const chosen = () =>
        [...penalty.querySelectorAll("input[name=penalty-kind]:checked")].map((box) => box.value);
      forms.push(
        form(
          "resolve",
          [
            el("label", { for: "resolve-kind" }, "办理结果"),
            kind,
            ...textField("resolve-note", "办理情况", 2000),
            el("label", { for: "resolve-due" }, "整改期限（责令整改时必填）"),
            due,
            penalty,
          ],
          () => ({
            resolution: kind.value,
            note: document.getElementById("resolve-note").value,
            evidence: citedEvidence(),
            ...stepPoint(),
            ...(due.value ? { rectification_due: due.value } : {}),
            ...(kind.value === "penalised"
              ? {
                  penalty: {
                    kinds: chosen(),
                    ...(fine.value ? { fine_yuan: Number(fine.value) } : {}),
                  },
                }
              : {}),
          }),
        ),
      );
    } else {
      forms.push(form(action, [], null));
    }
  }
  // One place for the steps on the ground, before their forms.
  if (page.actions.includes("progress") || page.actions.includes("resolve")) forms.unshift(pointFields());
  return forms.length ? forms : [el("p", { class: "empty" }, "您对这件案件暂无可执行的操作。")];
}

function describe(item, forms) {
  const d = item.data || {};
  const parts = [];
  if (d.actor) parts.push(`${d.actor_role === "unit_member" ? "承办人" : "操作人"} ${d.actor}`);
  if ("certificate_number" in d) parts.push(d.certificate_number ? `执法证 ${d.certificate_number}` : "无需执法证");
  if (d.grid_id || d.point) {
    const point = d.point && d.point.lat !== undefined ? `（${d.point.lat}, ${d.point.lon}）` : "";
    parts.push(`地点 网格 ${d.grid_id || "—"}${point}`);
  }
  if (d.acted_at && d.acted_at !== item.time) parts.push(`决定于 ${when(d.acted_at)}`);
  if (d.unit_id && item.type === "whistle.case.assigned") parts.push(`承办单位 ${d.unit_id}`);
  if (d.matter_name) parts.push(`事项 ${d.matter_code} ${d.matter_name}`);
  if (d.departments) parts.push(`召集 ${d.departments.map((x) => departmentName(x, forms)).join("、")}`);
  if (d.reason_code) parts.push(`理由：${whistleReason(d.reason_code, forms)}`);
  if (d.reason) parts.push(`${d.reason_code ? "说明" : "原因"}：${d.reason}`);
  if (d.note) parts.push(d.note);
  if (d.resolution) parts.push(label(RESOLUTION, d.resolution));
  if (d.penalty) {
    const words = d.penalty.kinds.map((k) => (k === "fine" ? `罚款${d.penalty.fine_yuan}元` : label(PENALTY, k)));
    parts.push(`处罚：${words.join("、")}`);
  }
  if (d.major_decisions) parts.push(`重大执法决定：${d.major_decisions.join("；")}`);
  if (d.approved !== undefined && item.type === "whistle.case.legal_review_decided") {
    parts.push(d.approved ? "审核通过" : "退回");
  }
  if (d.opinion) parts.push(`意见：${d.opinion}`);
  if (d.kind) parts.push(`${label(CLOCK, d.kind)}时限 ${when(d.due_at)}`);
  if (d.deadlines) {
    parts.push(d.deadlines.map((x) => `${label(CLOCK, x.kind)}期限 ${when(x.due_at)}`).join("，"));
  }
  if (Array.isArray(d.explanation) && d.explanation.length) parts.push(d.explanation.join("；"));
  return parts.join(" · ");
}

// In whose name the case is handled: the township, or the (entrusting) county department.
function actingLine(acting) {
  const who = acting && acting.acting_in_name_of;
  if (!who) return "—";
  return who.entrusted ? `${who.name}（委托执法，使用委托机关文书）` : who.name;
}

async function caseView(id) {
  if (!UUID_RE.test(id)) throw new Error("案件编号格式不正确");
  const [page, tips, files] = await Promise.all([
    api(`/v1/console/cases/${id}`),
    api(`/v1/cases/${id}/tips`),
    api(`/v1/cases/${id}/evidence`),
  ]);
  const c = page.case;
  await loadCountyForms([c.county]);
  showCalendarNotice(page.provisional);
  const facts = [
    ["状态", statusBadge(c.status)],
    ["时限", colourBadge(page.colour)],
    ["群众反映", page.text || "—"],
    ["地址", page.address || "—"],
    ["渠道", label(CHANNEL, page.channel || "") || "—"],
    ...(c.inspection_task_id ? [["巡查任务", c.inspection_task_id]] : []),
    ["乡镇 / 村 / 网格", [c.township_code, c.village_code, c.grid_id].filter(Boolean).join(" / ") || "未定位"],
    ["事项", page.matter_name ? `${c.matter_code} ${page.matter_name}` : "未确定"],
    ["承办单位", page.unit_name || "—"],
    ["执法名义", actingLine(c.acting)],
    ["执法依据", (c.acting && c.acting.legal_basis) || "—"],
    ["紧急程度", label(URGENCY, c.urgency)],
    ["退单次数", String(c.rejections)],
    ["版本", String(c.version)],
  ];
  $("#view").replaceChildren(
    ...[
    el("p", {}, el("button", { type: "button", class: "secondary", onclick: () => history.back() }, "← 返回")),
    el("h2", { id: "case-title", "data-version": c.version, "data-status": c.status }, `案件 ${c.id}`),
    el("dl", { id: "facts", class: "facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el(
      "section",
      { id: "routing", "aria-labelledby": "routing-title" },
      el("h3", { id: "routing-title" }, "分拨依据"),
      el("p", { class: "detail" }, `规则：${c.routing.rule || "—"} · 事项清单版本 ${c.catalogue_version}`),
      el("ol", {}, (c.routing.explanation || []).map((line) => el("li", {}, line))),
    ),
    tipsSection(page, tips),
    page.suggestions.length
      ? el(
          "section",
          { id: "suggestions", "aria-labelledby": "suggestions-title" },
          el("h3", { id: "suggestions-title" }, "系统建议事项"),
          el(
            "ol",
            {},
            page.suggestions.map((s) =>
              el("li", { class: "suggestion" }, `${s.matter_code} ${s.name}（得分 ${s.score}，关键词 ${s.keywords.join("、")}）`, s.unit_name ? ` → ${s.unit_name}` : ""),
            ),
          ),
        )
      : null,
    evidenceSection(page, files),
    el(
      "section",
      { id: "actions", "aria-labelledby": "actions-title" },
      el("h3", { id: "actions-title" }, "操作"),
      actionForms(page),
    ),
    el(
      "section",
      { id: "clocks", "aria-labelledby": "clocks-title" },
      el("h3", { id: "clocks-title" }, "办理时限"),
      page.clocks.length
        ? el(
            "ul",
            {},
            page.clocks.map((k) =>
              el(
                "li",
                {},
                colourBadge(k.colour),
                ` ${label(CLOCK, k.kind)}（第 ${k.round} 轮）：预警 ${when(k.warn_at)}，期限 ${when(k.due_at)}`,
                provisionalTag(k.provisional && !k.stopped_at),
                k.stopped_at ? `，已于 ${when(k.stopped_at)} 停止（${k.on_time ? "按期" : "超期"}）` : "",
              ),
            ),
          )
        : el("p", { class: "empty" }, "尚未设定时限（派单后由督办服务设定）。"),
    ),
    el(
      "section",
      { id: "timeline", "aria-labelledby": "timeline-title" },
      el("h3", { id: "timeline-title" }, "办理记录"),
      page.timeline.length
        ? el(
            "ol",
            { class: "timeline" },
            page.timeline.map((item) =>
              el(
                "li",
                { "data-type": item.type },
                el("time", { datetime: item.time }, when(item.time)),
                el("strong", {}, label(EVENT, item.type)),
                el("span", { class: "detail" }, describe(item, formsOf(page.case.county))),
                FIELD_STEPS.has(item.type) ? (item.data.evidence || []).map((sha) => evidenceLink(c.id, sha)) : null,
              ),
            ),
          )
        : el("p", { class: "empty" }, "暂无记录。"),
    ),
    ].filter(Boolean),
  );
}

// --- routing between views -----------------------------------------------------------------

async function route() {
  if (!me) return;
  const [path, query] = (location.hash.slice(1) || "").split("?");
  const params = new URLSearchParams(query || "");
  for (const tab of document.querySelectorAll("#tabs a")) {
    tab.setAttribute("aria-current", path === tab.getAttribute("href").slice(1) ? "page" : "false");
  }
  showCalendarNotice(false); // each view says again whether what it shows is provisional
  if (path.startsWith("/case/")) return caseView(path.slice("/case/".length));
  if (path === "/open") return openView(params);
  if (path === "/mine") return mineView();
  if (path === "/triage") return triageView();
  if (path === "/admission") return admissionView();
  if (path === "/approval") return approvalView();
  if (path === "/legal-review") return legalReviewView();
  if (path === "/inspections") return inspectionsView();
  // The default view is shown within this same run, so that the page says "done" only once it
  // shows it: assigning location.hash would show it in a later run, after a "done" too early.
  const home = me.roles.includes("unit_member") && !me.roles.includes("dispatcher");
  const government = me.roles.includes("county_government") && me.roles.length === 1;
  const reviewer = me.roles.includes("legal_reviewer") && me.roles.length === 1;
  const landing = reviewer ? "#/legal-review" : government ? "#/approval" : home ? "#/mine" : "#/triage";
  history.replaceState(null, "", landing);
  return route();
}

function start() {
  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    showNotice("");
    run(async () => {
      await signIn();
      await route();
    });
  });
  $("#forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#token").value = "";
    me = null;
    $("#tabs").hidden = true;
    $("#county-choice").hidden = true;
    $("#view").replaceChildren();
    $("#who").textContent = "请先粘贴访问令牌。";
  });
  $("#county").addEventListener("change", () =>
    run(async () => {
      await signIn($("#county").value);
      await route();
    }),
  );
  window.addEventListener("hashchange", () => {
    showNotice("");
    run(route);
  });
  if (token()) {
    $("#token").value = token();
    run(async () => {
      await signIn();
      await route();
    });
  }
}

window.whistleConsole = { problemMessage };
document.addEventListener("DOMContentLoaded", start);
