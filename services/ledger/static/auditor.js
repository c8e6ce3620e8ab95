// The auditor page: a case's ledger trail, each entry verified in this browser.
//
// Nothing the server says about an entry is believed: the entry's canonical bytes (RFC 8785
// JSON, as the trail gives them) are hashed here, SHA-256(0x00 ‖ bytes), the RFC 9162
// inclusion proof is walked up to the signed tree head's root, and the head's Ed25519
// signature is checked with WebCrypto. The verifier mirrors services/ledger/merkle.py.
"use strict";

const TOKEN_KEY = "whistle.auditor.token";
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TIMESTAMP_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

// The clocks' names in an entry's summary.
const CLOCK_NAMES = {
  first_response: "首次响应",
  resolution: "办结",
  referral_acceptance: "移送接收",
  assistance_response: "协助响应",
  legal_review: "法制审核",
};

// --- RFC 9162 hashing and proofs ---------------------------------------------------------

const encoder = new TextEncoder();

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(text, length, name) {
  if (typeof text !== "string" || text.length !== length * 2 || !/^[0-9a-f]*$/.test(text)) {
    throw new Error(`${name} 不是 ${length * 2} 位十六进制数`);
  }
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

async function sha256(...parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const buffer = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    buffer.set(part, offset);
    offset += part.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
}

const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);
const leafHash = (entry) => sha256(LEAF, entry);
const nodeHash = (left, right) => sha256(NODE, left, right);

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// RFC 9162 §2.1.3.2: does `path` prove `leaf` at `index` in the tree of `size` with `root`?
// Halving by division, not shifts: JavaScript's bit operators are 32-bit.
async function verifyInclusion(leaf, index, size, path, root) {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    return false;
  }
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && sameBytes(r, root);
}

// --- signed tree heads -------------------------------------------------------------------

// The RFC 8785 JSON of the head's unsigned fields, as services/ledger/heads.py signs it. The
// fields are checked first (hex, the exact timestamp form), so no escaping can differ.
function headSignedBytes(head) {
  if (!Number.isSafeInteger(head.tree_size) || head.tree_size < 0) {
    throw new Error("树头的 tree_size 不是非负整数");
  }
  fromHex(head.root_hash, 32, "树头的根哈希");
  if (typeof head.timestamp !== "string" || !TIMESTAMP_RE.test(head.timestamp)) {
    throw new Error("树头的时间格式不正确");
  }
  return encoder.encode(
    `{"root_hash":"${head.root_hash}","timestamp":"${head.timestamp}","tree_size":${head.tree_size}}`,
  );
}

function pemToDer(pem) {
  const body = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

// "verified", "invalid" or "unsupported" (this browser's WebCrypto has no Ed25519).
async function verifyHeadSignature(head, pem) {
  let key;
  try {
    key = await crypto.subtle.importKey("spki", pemToDer(pem), { name: "Ed25519" }, false, [
      "verify",
    ]);
  } catch (error) {
    if (error && error.name === "NotSupportedError") return "unsupported";
    throw new Error(`无法读取账本公钥：${error && error.message}`);
  }
  const signature = fromHex(head.signature, 64, "树头签名");
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, signature, headSignedBytes(head));
  return ok ? "verified" : "invalid";
}

// --- one trail entry ---------------------------------------------------------------------

// {state: "ok" | "bad" | "wait", why, event}: `event` is parsed from the verified bytes, so
// what the page shows of an entry is what was hashed.
async function verifyEntry(entry, head, root) {
  const seq = entry.seq;
  if (typeof entry.canonical !== "string") {
    return { state: "bad", why: `序号 ${seq} 的记录没有原始字节，无法校验。` };
  }
  const bytes = encoder.encode(entry.canonical);
  let event = null;
  try {
    event = JSON.parse(entry.canonical);
  } catch {
    return { state: "bad", why: `序号 ${seq} 的记录内容不是有效的 JSON。` };
  }
  const leaf = await leafHash(bytes);
  if (entry.leaf_hash !== toHex(leaf)) {
    return {
      state: "bad",
      event,
      why: `序号 ${seq}：服务器给出的叶哈希与本浏览器由记录内容算出的不一致。`,
    };
  }
  if (!head || entry.inclusion_path === null || entry.inclusion_path === undefined) {
    return {
      state: "wait",
      event,
      why: `序号 ${seq} 记录于最新签名树头之后，下一个树头签发后即可核验。`,
    };
  }
  let path;
  try {
    path = entry.inclusion_path.map((h, i) => fromHex(h, 32, `包含证明第 ${i + 1} 项`));
  } catch (error) {
    return { state: "bad", event, why: `序号 ${seq} 的包含证明格式错误：${error.message}` };
  }
  const included = await verifyInclusion(leaf, seq, head.tree_size, path, root);
  if (!included) {
    return {
      state: "bad",
      event,
      why:
        `序号 ${seq} 的记录内容与签名树头（大小 ${head.tree_size}）不符：由该记录重算的叶哈希` +
        ` ${toHex(leaf).slice(0, 16)}… 经包含证明算不出树头的根哈希。记录可能在写入后被改动。`,
    };
  }
  return { state: "ok", event };
}

// --- what happened, in words -------------------------------------------------------------

const TYPES = {
  "whistle.tip.received": "受理线索",
  "whistle.case.referred": "县直部门移送",
  "whistle.case.opened": "立案",
  "whistle.case.triage_required": "转人工分拨",
  "whistle.case.assigned": "派单",
  "whistle.case.accepted": "签收",
  "whistle.case.rejected": "退单",
  "whistle.case.started": "开始办理",
  "whistle.case.progress_recorded": "记录进展",
  "whistle.case.resolved": "办结",
  "whistle.case.closed": "结案",
  "whistle.case.reopened": "重新办理",
  "whistle.case.contacted": "联系群众",
  "whistle.case.assistance_requested": "请求乡镇协助",
  "whistle.tip.rated": "群众评价（回访）",
  "whistle.tip.follow_up_unreachable": "回访未联系上",
  "whistle.deadlines.set": "设定办理时限",
  "whistle.deadline.stopped": "时限停止计时",
  "whistle.deadline.warning": "时限预警",
  "whistle.deadline.overdue": "超期",
  "whistle.case.chased": "催办",
  "whistle.case.supervised": "督办",
  "whistle.leadership.notified": "报告领导",
  "whistle.personal_data.erased": "删除个人信息",
};

const FIELDS = [
  ["tracking_no", "受理编号"],
  ["channel", "渠道"],
  ["text", "内容"],
  ["address", "地址"],
  ["comment", "评价意见"],
  ["legal_basis", "法律依据"],
  ["erased_by", "执行人"],
  ["matter_name", "事项"],
  ["matter_code", "事项编码"],
  ["township_code", "乡镇"],
  ["unit_id", "承办单位"],
  ["staff_id", "承办人"],
  ["queue", "队列"],
  ["reason", "原因"],
  ["note", "说明"],
  ["rating", "评价"],
  ["method", "联系方式"],
  ["contacted_at", "联系时间"],
  ["recorded_by", "记录人"],
  ["resolution", "办理结果"],
  ["policy_id", "时限政策"],
  ["urgency", "紧急程度"],
  ["actor", "操作人"],
];

// A personal field is sealed in the verified bytes ({"x-sealed": …}, docs/ledger.md): the page
// shows what the ledger opened it to (`personal`, not covered by the hash) — 已按规定删除 once
// the tip was erased.
function isSealed(value) {
  return value !== null && typeof value === "object" && typeof value["x-sealed"] === "string";
}

function describe(event, personal) {
  const data = (event && typeof event.data === "object" && event.data) || {};
  const opened = (personal && typeof personal === "object" && personal) || {};
  const parts = [];
  for (const [key, label] of FIELDS) {
    let value = data[key];
    if (isSealed(value)) value = typeof opened[key] === "string" ? opened[key] : "（已加密）";
    if (value !== undefined && value !== null && value !== "") parts.push(`${label}：${value}`);
  }
  if (Array.isArray(data.deadlines)) {
    for (const d of data.deadlines) {
      const kind = CLOCK_NAMES[d.kind] || d.kind;
      parts.push(`${kind}期限：${formatTime(d.due_at)}`);
    }
  }
  return parts.join("；") || "—";
}

function formatTime(value) {
  const moment = new Date(value);
  if (Number.isNaN(moment.getTime())) return String(value ?? "—");
  return moment.toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
}

// --- talking to the ledger ---------------------------------------------------------------

const PROBLEMS = {
  401: "未通过身份验证：需要有效的审计员访问令牌。请粘贴令牌后重试。",
  403: "无权查看：该令牌的角色不能查看审计轨迹（需要审计员或县级督办角色）。",
  404: "没有找到。",
  422: "请求格式不正确。",
};

class ProblemError extends Error {
  constructor(status, detail) {
    super(PROBLEMS[status] || `服务器返回错误（HTTP ${status}）。`);
    this.status = status;
    this.detail = detail;
  }
}

async function getJson(url, token) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
  if (!response.ok) {
    let detail = "";
    try {
      detail = (await response.json()).detail || "";
    } catch {
      detail = "";
    }
    throw new ProblemError(response.status, detail);
  }
  return response.json();
}

async function getText(url) {
  const response = await fetch(url, { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw new ProblemError(response.status, "");
  return response.text();
}

// --- the page ----------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function showStatus(kind, title, lines = [], detail = "") {
  const status = $("status");
  status.hidden = false;
  status.className = kind;
  status.replaceChildren(element("h2", {}, title));
  if (lines.length) status.append(element("ul", {}, ...lines.map((l) => element("li", {}, l))));
  if (detail) status.append(element("p", { class: "detail" }, `服务器说明：${detail}`));
}

function showHead(head, signature, fingerprint) {
  const box = $("head");
  box.hidden = false;
  const signatureText = {
    verified: "已在浏览器中校验（Ed25519）",
    invalid: "签名无效",
    unsupported: "签名未在浏览器中校验（本浏览器不支持 Ed25519）",
  }[signature];
  box.replaceChildren(
    element(
      "dl",
      {},
      element("dt", {}, "签名树头大小"),
      element("dd", {}, String(head.tree_size)),
      element("dt", {}, "根哈希"),
      element("dd", {}, head.root_hash),
      element("dt", {}, "签发时间"),
      element("dd", {}, `${formatTime(head.timestamp)}（${head.timestamp}）`),
      element("dt", {}, "树头签名"),
      element("dd", { id: "head-signature", "data-state": signature }, signatureText),
      element("dt", {}, "公钥指纹"),
      element("dd", {}, `SHA-256 ${fingerprint}（请与您保存的账本公钥比对）`),
    ),
  );
}

function showEntries(rows) {
  const table = $("trail");
  table.hidden = false;
  const body = table.querySelector("tbody");
  body.replaceChildren(
    ...rows.map(({ entry, result }) => {
      const event = result.event || {};
      const type = typeof event.type === "string" ? event.type : entry.type;
      const mark = { ok: "已验证", bad: "验证失败", wait: "待核验" }[result.state];
      const cell = element("td", { class: "verdict" }, element("span", { class: `mark ${result.state}` }, mark));
      if (result.why) cell.append(element("span", { class: "why" }, result.why));
      return element(
        "tr",
        { class: result.state, "data-seq": String(entry.seq) },
        element("td", { class: "seq" }, String(entry.seq)),
        element("td", { class: "time" }, formatTime(event.time ?? entry.time)),
        element("td", { class: "type" }, TYPES[type] || type, element("br"), element("code", {}, type)),
        element("td", { class: "what" }, describe(event, entry.personal)),
        cell,
      );
    }),
  );
}

async function lookUp(token, caseId) {
  $("head").hidden = true;
  $("trail").hidden = true;
  if (!UUID_RE.test(caseId)) {
    showStatus("bad", "案件编号格式不正确", ["案件编号是形如 6f1c2d3e-0000-4000-8000-000000000000 的 UUID。"]);
    return;
  }
  if (!window.crypto || !crypto.subtle) {
    showStatus("bad", "无法在浏览器中核验", [
      "本浏览器没有提供 WebCrypto：请通过 HTTPS（或在本机 localhost）打开本页。",
    ]);
    return;
  }
  showStatus("wait", "正在查询并核验…");
  let trail;
  let pem;
  try {
    trail = await getJson(`/v1/cases/${encodeURIComponent(caseId)}/trail`, token);
    pem = await getText("/v1/public-key");
  } catch (error) {
    if (error instanceof ProblemError) showStatus("bad", error.message, [], error.detail);
    else showStatus("bad", "无法连接账本服务", [String(error && error.message)]);
    return;
  }
  if (!trail.entries.length) {
    showStatus("wait", "账本中没有该案件的记录", ["请确认案件编号；新案件的事件可能尚未记入账本。"]);
    return;
  }
  const head = trail.tree_head;
  const failures = [];
  let signature = "unsupported";
  let root = null;
  if (head) {
    try {
      root = fromHex(head.root_hash, 32, "树头的根哈希");
      signature = await verifyHeadSignature(head, pem);
    } catch (error) {
      signature = "invalid";
      failures.push(`签名树头有误：${error.message}`);
    }
    if (signature === "invalid" && !failures.length) {
      failures.push("签名树头的 Ed25519 签名无效：树头不是账本私钥签发的，或已被改动。");
    }
    const fingerprint = toHex(await sha256(pemToDer(pem)));
    showHead(head, signature, fingerprint);
  }
  const rows = [];
  for (const entry of trail.entries) {
    const result =
      signature === "invalid"
        ? { state: "bad", why: `序号 ${entry.seq}：签名树头无效，无法据此核验。` }
        : await verifyEntry(entry, head, root);
    if (result.state === "bad" && signature !== "invalid") failures.push(result.why);
    rows.push({ entry, result });
  }
  showEntries(rows);
  const waiting = rows.filter((r) => r.result.state === "wait").length;
  const verified = rows.filter((r) => r.result.state === "ok").length;
  const notes = [];
  if (signature === "unsupported") notes.push("签名未在浏览器中校验：本浏览器的 WebCrypto 不支持 Ed25519，仅核对了根哈希。");
  if (waiting) notes.push(`${waiting} 条记录晚于最新签名树头，尚待核验。`);
  if (failures.length) {
    showStatus("bad", `验证失败：${failures.length} 处问题`, failures.concat(notes));
  } else if (verified === rows.length && signature === "verified") {
    showStatus("ok", `全部 ${rows.length} 条记录已验证`, [
      "每条记录的内容都在本浏览器中重算哈希，经包含证明到达签名树头的根，树头签名有效。",
    ]);
  } else {
    showStatus("wait", `${verified} 条记录已验证`, notes);
  }
}

function start() {
  const tokenField = $("token");
  tokenField.value = sessionStorage.getItem(TOKEN_KEY) || "";
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("case")) $("case-id").value = params.get("case");
  $("lookup").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = tokenField.value.trim().replace(/^Bearer\s+/i, "");
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    const button = $("submit");
    button.disabled = true;
    document.body.dataset.state = "busy";
    try {
      await lookUp(token, $("case-id").value.trim());
    } finally {
      button.disabled = false;
      document.body.dataset.state = "done";
    }
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    tokenField.value = "";
  });
}

// For tests of the verifier itself, and for an auditor's own console.
window.whistleVerify = { verifyInclusion, leafHash, nodeHash, fromHex, toHex, verifyHeadSignature };

document.addEventListener("DOMContentLoaded", start);
