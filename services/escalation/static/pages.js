// What escalation's two pages share — the department page (dept.js) and the township's
// meeting page (township.js) — loaded before each page's own script, in the same global scope.
// `call` reads the page's own TOKEN_KEY and `explain` (each page words its refusals for its
// own users).
"use strict";

const ZONE = "Asia/Shanghai";
const DECISION_STATUS = {
  running: "办理中", overdue: "已超期", met: "按时办结", late: "逾期办结", lapsed: "案件已结案",
};

const $ = (selector) => document.querySelector(selector);
const timeFormat = new Intl.DateTimeFormat("zh-CN", {
  timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", hour12: false,
});
const when = (iso) => timeFormat.format(new Date(iso));

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function say(text, kind) {
  const status = $("#status");
  status.textContent = text;
  status.className = kind || "";
  status.hidden = false;
}

async function call(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const headers = { authorization: `Bearer ${token}` };
  if (body) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(explain(response.status, data));
  return data;
}
