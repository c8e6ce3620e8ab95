// The citizen page: report a problem (photo, location), follow it, rate the result.
// Talks only to intake's own API; every text the citizen reads is Simplified Chinese.
"use strict";

const $ = (id) => document.getElementById(id);

const state = { attachment: null, uploading: false, location: null, idempotencyKey: null };

const DEFAULT_ERRORS = {
  400: "请求格式不正确，请刷新页面后重试。",
  404: "未找到该编号，或查询码不正确。",
  409: "当前不能进行此操作。",
  413: "文件过大，请换一张较小的照片。",
  415: "不支持的文件类型，请上传照片。",
  422: "填写的内容有误，请检查后重试。",
  503: "服务暂时不可用，请稍后再试。",
};

const FIELD_ERRORS = {
  "body.contact.phone": "手机号码格式不正确。",
  "body.text": "请填写问题描述。",
  "body.address": "地址过长或格式不正确。",
};

function hasChinese(text) {
  return typeof text === "string" && /[\u4e00-\u9fff]/.test(text);
}

// What to tell the citizen about a failed request: the server's own Chinese explanation when it
// gives one, else a plain one for the status.
async function explain(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch (_) {
    problem = {};
  }
  if (response.status === 429) {
    const seconds = Number(response.headers.get("Retry-After") || "60");
    return `请求过于频繁，请约 ${Math.max(1, Math.ceil(seconds / 60))} 分钟后再试。`;
  }
  if (response.status === 422 && Array.isArray(problem.errors)) {
    for (const error of problem.errors) {
      if (FIELD_ERRORS[error.location]) return FIELD_ERRORS[error.location];
    }
  }
  if (hasChinese(problem.detail)) return problem.detail;
  return DEFAULT_ERRORS[response.status] || `请求失败（${response.status}），请稍后再试。`;
}

async function call(url, options) {
  try {
    return await fetch(url, options);
  } catch (_) {
    return null; // the network, not the server: the citizen may simply try again
  }
}

const NETWORK_ERROR = "网络连接失败，请检查网络后重试。";

function setState(name) {
  document.body.dataset.state = name;
}

// Tabs ---------------------------------------------------------------------------------------

function showTab(which) {
  for (const [tab, view] of [["tab-report", "report-view"], ["tab-track", "track-view"]]) {
    const selected = tab === which;
    $(tab).setAttribute("aria-selected", String(selected));
    $(view).hidden = !selected;
  }
}

// Reporting ----------------------------------------------------------------------------------

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

async function uploadPhoto() {
  const file = $("photo").files[0];
  state.attachment = null;
  if (!file) return;
  const preview = $("photo-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  state.uploading = true;
  $("submit-tip").disabled = true;
  $("photo-status").textContent = "照片上传中…";
  const form = new FormData();
  form.append("file", file);
  const response = await call("/v1/attachments", { method: "POST", body: form });
  state.uploading = false;
  $("submit-tip").disabled = false;
  if (response && response.ok) {
    state.attachment = (await response.json()).id;
    $("photo-status").textContent = "照片已上传。";
    $("photo").dataset.uploaded = state.attachment;
  } else {
    preview.hidden = true;
    $("photo").value = "";
    $("photo-status").textContent = response ? await explain(response) : NETWORK_ERROR;
  }
}

function locate() {
  const status = $("location-status");
  if (!navigator.geolocation) {
    status.textContent = "此浏览器无法定位，请填写详细地址。";
    return;
  }
  status.textContent = "正在获取位置…";
  navigator.geolocation.getCurrentPosition(
    (position) => {
      state.location = {
        lat: Number(position.coords.latitude.toFixed(6)),
        lon: Number(position.coords.longitude.toFixed(6)),
      };
      status.textContent = `已获取位置（纬度 ${state.location.lat}，经度 ${state.location.lon}）。`;
    },
    () => {
      state.location = null;
      status.textContent = "无法获取位置（可能未允许定位），请填写详细地址。";
    },
    { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
  );
}

function tipBody() {
  const text = $("text").value.trim();
  const address = $("address").value.trim();
  const phone = $("phone").value.trim();
  const anonymous = $("anonymous").checked;
  if (!text) return { error: "请填写问题描述。" };
  if (!state.location && !address) return { error: "请使用当前位置或填写详细地址。" };
  const body = { text };
  if (state.location) body.location = state.location;
  if (address) body.address = address;
  if (phone && !anonymous) body.contact = { phone };
  if (anonymous) body.anonymous = true;
  if (state.attachment) body.attachments = [state.attachment];
  return { body };
}

async function submitTip(event) {
  event.preventDefault();
  const error = $("report-error");
  error.textContent = "";
  if (state.uploading) {
    error.textContent = "照片仍在上传，请稍候。";
    return;
  }
  const built = tipBody();
  if (built.error) {
    error.textContent = built.error;
    return;
  }
  // The same key for every retry of this submission: a retry never makes a second tip.
  state.idempotencyKey = state.idempotencyKey || newKey();
  $("submit-tip").disabled = true;
  setState("busy");
  const response = await call("/v1/tips", {
    method: "POST",
    headers: { "content-type": "application/json", "Idempotency-Key": state.idempotencyKey },
    body: JSON.stringify(built.body),
  });
  $("submit-tip").disabled = false;
  if (!response || !response.ok) {
    error.textContent = response ? await explain(response) : NETWORK_ERROR;
    setState("done");
    return;
  }
  const receipt = await response.json();
  $("tracking-no").textContent = receipt.tracking_no;
  $("access-code").textContent = receipt.access_code;
  $("report-form").hidden = true;
  $("receipt").hidden = false;
  $("receipt-title").focus();
  setState("done");
}

function resetReport() {
  $("report-form").reset();
  Object.assign(state, { attachment: null, location: null, idempotencyKey: null });
  $("photo-preview").hidden = true;
  $("photo-status").textContent = "";
  $("location-status").textContent = "";
  $("report-error").textContent = "";
  $("receipt").hidden = true;
  $("report-form").hidden = false;
}

// Following ----------------------------------------------------------------------------------

function formatTime(iso) {
  return new Date(iso).toLocaleString("zh-CN", { hour12: false });
}

function renderStatus(tip) {
  $("status-text").textContent = tip.status_text;
  // The exact place the citizen gave: shown to them alone, after the access code (the public
  // Open311 feed shows it coarsened, or not at all for matters that name the reporter).
  const place = $("reported-place");
  const point = tip.location ? `纬度 ${tip.location.lat}，经度 ${tip.location.lon}` : "";
  const where = [tip.address, point].filter(Boolean).join("；");
  place.hidden = !where;
  place.textContent = where ? `反映位置：${where}` : "";
  const joined = $("joined-note");
  joined.hidden = !tip.joined_case;
  joined.textContent = tip.joined_case_note || "";
  const timeline = $("timeline");
  timeline.replaceChildren(
    ...tip.timeline.map((entry) => {
      const item = document.createElement("li");
      const time = document.createElement("time");
      time.dateTime = entry.at;
      time.textContent = formatTime(entry.at);
      item.append(time, entry.status_text);
      return item;
    }),
  );
  const given = $("rating-given");
  given.hidden = !tip.feedback;
  if (tip.feedback) {
    const comment = tip.feedback.comment ? `（${tip.feedback.comment}）` : "";
    given.textContent = `您的评价：${tip.feedback.rating_text}${comment}`;
  }
  $("rate-form").hidden = !tip.may_rate;
  $("rate-error").textContent = "";
  $("tip-status").hidden = false;
}

async function lookUp(event) {
  if (event) event.preventDefault();
  const error = $("track-error");
  error.textContent = "";
  const trackingNo = $("track-no").value.trim().toUpperCase();
  const code = $("track-code").value.trim();
  if (!trackingNo || !code) {
    error.textContent = "请填写受理编号和查询码。";
    return;
  }
  setState("busy");
  // The code goes in a header, never in the URL (logs and history keep URLs).
  const response = await call(`/v1/tips/${encodeURIComponent(trackingNo)}`, {
    headers: { accept: "application/json", "access-code": code },
  });
  if (!response || !response.ok) {
    $("tip-status").hidden = true;
    error.textContent = response ? await explain(response) : NETWORK_ERROR;
    setState("done");
    return;
  }
  renderStatus(await response.json());
  setState("done");
}

async function rate(event) {
  event.preventDefault();
  const error = $("rate-error");
  const chosen = document.querySelector('input[name="rating"]:checked');
  if (!chosen) {
    error.textContent = "请选择满意、基本满意或不满意。";
    return;
  }
  const comment = $("comment").value.trim();
  const body = { code: $("track-code").value.trim(), rating: chosen.value };
  if (comment) body.comment = comment;
  const trackingNo = $("track-no").value.trim().toUpperCase();
  $("submit-rating").disabled = true;
  setState("busy");
  const response = await call(`/v1/tips/${encodeURIComponent(trackingNo)}/feedback`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  $("submit-rating").disabled = false;
  if (!response || !response.ok) {
    error.textContent = response ? await explain(response) : NETWORK_ERROR;
    setState("done");
    return;
  }
  const taken = await response.json();
  $("rate-form").reset();
  await lookUp();
  const given = $("rating-given");
  given.textContent = `${taken.message}您的评价：${taken.rating_text}`;
  given.hidden = false;
}

function trackThis() {
  $("track-no").value = $("tracking-no").textContent;
  $("track-code").value = $("access-code").textContent;
  showTab("tab-track");
  lookUp();
}

document.addEventListener("DOMContentLoaded", () => {
  $("tab-report").addEventListener("click", () => showTab("tab-report"));
  $("tab-track").addEventListener("click", () => showTab("tab-track"));
  $("photo").addEventListener("change", uploadPhoto);
  $("locate").addEventListener("click", locate);
  $("report-form").addEventListener("submit", submitTip);
  $("report-another").addEventListener("click", resetReport);
  $("track-this").addEventListener("click", trackThis);
  $("track-form").addEventListener("submit", lookUp);
  $("rate-form").addEventListener("submit", rate);
  $("receipt-title").tabIndex = -1;
  setState("ready");
});
