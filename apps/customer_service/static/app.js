// The agent page: POST the message to /v1/reply and show the suggestion.
"use strict";

const $ = (id) => document.getElementById(id);
let threshold = null;

function percent(value) {
  return `${Math.round(value * 100)} %`;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
  $("result").hidden = true;
}

function show(s) {
  $("error").hidden = true;
  const answer = s.decision === "answer";
  $("decision").textContent = answer ? "Answer with the suggested reply" : "Hand off to a human agent";
  $("decision").className = `decision ${s.decision}`;
  $("decision").dataset.decision = s.decision;
  $("reason").textContent = s.reason;
  $("intent").textContent = s.intent;
  $("confidence-text").textContent = `(${percent(s.confidence)})`;
  $("confidence-fill").style.width = percent(s.confidence).replace(" ", "");
  $("confidence-bar").setAttribute("aria-valuenow", String(Math.round(s.confidence * 100)));
  $("threshold-mark").hidden = threshold === null;
  if (threshold !== null) $("threshold-mark").style.left = `${threshold * 100}%`;
  $("reply-block").hidden = !answer;
  $("reply").textContent = answer ? s.reply : "";
  $("copied").hidden = true;
  $("alternatives").replaceChildren(...s.alternatives.map((a) => {
    const item = document.createElement("li");
    item.textContent = `${a.intent} (${percent(a.confidence)})`;
    return item;
  }));
  $("result").hidden = false;
}

async function ask(event) {
  event.preventDefault();
  const name = $("customer-name").value.trim();
  const body = { message: $("message").value, context: name ? { customer_name: name } : {} };
  $("submit").disabled = true;
  try {
    const response = await fetch("/v1/reply", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json();
    if (response.ok) show(data);
    else showError(data.message || `request failed (${response.status})`);
  } catch (error) {
    showError(`The app could not be reached: ${error}`);
  } finally {
    $("submit").disabled = false;
  }
}

async function copyReply() {
  const text = $("reply").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API needs a secure context or permission: fall back to a selection copy.
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copied").hidden = false;
}

$("ask").addEventListener("submit", ask);
$("copy").addEventListener("click", copyReply);
function showPolicy(info) {
  threshold = info.threshold;
  const coverage = info.coverage === null ? "not tuned yet"
    : `answers ${percent(info.coverage)} of messages at ${percent(info.target_precision)} precision`;
  $("policy").textContent = `Hand-off threshold ${percent(info.threshold)}: ${coverage}.`;
}

fetch("/v1/info").then((r) => r.json()).then(showPolicy).catch(() => {});
