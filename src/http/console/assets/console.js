// bootloader console: confirmations, reading a profile file into its form,
// and deployment pages that follow their deployment (server-sent events).
// Every page works without it; this only saves a reload or asks first.
"use strict";

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  const button = ev.submitter;
  const question = (button && button.dataset.confirm) || form.dataset.confirm;
  if (question && !window.confirm(question)) {
    ev.preventDefault();
  }
});

document.addEventListener("change", (ev) => {
  const input = ev.target;
  if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.dataset.into) return;
  const target = document.getElementById(input.dataset.into);
  const file = input.files && input.files[0];
  if (!target || !file) return;
  file.text().then((text) => { target.value = text; target.focus(); });
});

function follow(root) {
  const url = root.dataset.follow;
  if (!url || !window.EventSource) return;
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const source = new EventSource(url);
  source.addEventListener("log", (ev) => {
    const entry = JSON.parse(ev.data);
    const last = Number(log.dataset.last || 0);
    if (entry.id <= last) return;
    log.dataset.last = String(entry.id);
    const li = document.createElement("li");
    li.className = "lv-" + entry.level;
    const at = document.createElement("time");
    at.dateTime = entry.at;
    at.textContent = entry.at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
    const lvl = document.createElement("span");
    lvl.className = "lvl";
    lvl.textContent = entry.level;
    li.append(at, " ", lvl, " ", entry.message);
    log.append(li);
    log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("state", (ev) => {
    const d = JSON.parse(ev.data);
    $("progress").value = d.progress;
    $("progress").textContent = d.progress + " %";
    $("percent").textContent = d.progress + " %";
    $("step").textContent = d.step || "—";
    $("action").textContent = String(d.action_index);
    const state = $("state");
    state.textContent = "";
    const badge = document.createElement("span");
    badge.className = "state s-" + d.state;
    badge.textContent = d.state;
    state.append(badge);
    const error = $("error");
    error.textContent = d.error || "";
    error.hidden = !d.error;
    if (["complete", "error", "cancelled"].includes(d.state)) {
      // Its last step may still log; the server ends the stream after it.
      if (!d.step) source.close();
      if (d.finished_at) $("finished").textContent = d.finished_at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
      const cancel = $("cancel");
      if (cancel) cancel.closest("form").hidden = true;
      const repeat = $("repeat-form");
      if (repeat) repeat.hidden = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live) follow(live);
});
