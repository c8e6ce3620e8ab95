"use strict";
// 行政执法公示: reads /v1/publicity (no token) and shows each record. Text goes in as text,
// never as markup.

const PAGE = 20;
let oldest = null;

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(iso) {
  return new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
}

function row(list, term, value) {
  list.append(el("dt", {}, term), el("dd", {}, value));
}

function render(record) {
  const facts = el("dl");
  row(facts, "执法类别", record.action_type);
  row(facts, "执法依据", record.legal_basis);
  row(facts, "执法结果", record.result);
  row(facts, "执法主体", record.agency_responsible || "—");
  row(facts, "决定机关", record.acting_in_name_of || "—");
  const officer = record.officer
    ? `${record.officer.name}（执法证号 ${record.officer.certificate_number || "—"}）`
    : "—";
  row(facts, "执法人员", officer);
  row(facts, "地点", [record.township, record.village].filter(Boolean).join(" ") || "—");
  const steps = el("ol", { class: "process" });
  for (const step of record.process) steps.append(el("li", {}, `${step.step}：${when(step.at)}`));
  row(facts, "执法流程", steps);
  row(facts, "救济渠道", record.remedy);
  return el(
    "article",
    { "data-case": record.service_request_id },
    el("h2", {}, `${record.service_name}（${record.matter_code}）`),
    facts,
  );
}

async function load() {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (oldest) query.set("before", oldest);
  const response = await fetch(`/v1/publicity?${query}`);
  const error = document.getElementById("error");
  if (!response.ok) {
    error.textContent = "公示信息暂时无法读取，请稍后再试。";
    error.hidden = false;
    return;
  }
  error.hidden = true;
  const answer = await response.json();
  document.getElementById("delay").textContent =
    `案件结案 ${answer.delay_days} 天后公示。`;
  const records = document.getElementById("records");
  if (!oldest && answer.records.length === 0) {
    records.append(el("p", { class: "muted", id: "empty" }, "暂无公示的执法案件。"));
  }
  for (const record of answer.records) records.append(render(record));
  if (answer.records.length > 0) {
    oldest = answer.records[answer.records.length - 1].updated_datetime;
  }
  document.getElementById("more").hidden = answer.records.length < PAGE;
}

document.getElementById("more").addEventListener("click", load);
load();
