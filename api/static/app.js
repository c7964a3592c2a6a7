// The web page: submit images as jobs, follow each by long-poll, list the caller's recent jobs.
// Plain JS, no build step. The API key lives in localStorage and goes on every request.
"use strict";

const KEY = "queue-inference.api-key";
const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

// A failed request: its status, the problem's `detail`, and Retry-After (seconds) when given.
class ApiError extends Error {
  constructor(status, detail, retryAfter) {
    super(detail);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${localStorage.getItem(KEY) || ""}` };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(0, "The API cannot be reached; is it running?", 5);
  }
  const body = await response.json().catch(() => null);
  if (response.ok) return body;
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  const error = new ApiError(response.status, (body && body.detail) || response.statusText, retryAfter);
  if (response.status === 401) askForKey(error.message);
  throw error;
}

function explain(error) {
  const why = { 429: "Too many requests", 503: "The service is busy or Redis is down" }[error.status];
  let text = why ? `${why}: ${error.message}` : error.message;
  if (error.retryAfter) text += ` Retry after ${error.retryAfter} s.`;
  return text;
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

// --- The key ---------------------------------------------------------------------------------

function askForKey(why) {
  $("key-form").hidden = false;
  $("submit").hidden = $("recent-section").hidden = true;
  $("change-key").hidden = true;
  if (why && localStorage.getItem(KEY)) notice(`That key was refused: ${why}`);
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  start();
});

$("change-key").addEventListener("click", () => {
  notice("");
  askForKey();
});

// --- Models ----------------------------------------------------------------------------------

let models = [];

async function loadModels() {
  // The page uploads pictures: models that take a JSON body of features are left out.
  models = (await api("/models")).filter((m) => m.kind === "image");
  const select = $("model");
  select.replaceChildren(...models.map((m) => {
    const option = new Option(`${m.name}:${m.version}${m.default ? " (default)" : ""}`, `${m.name}:${m.version}`);
    option.selected = m.default;
    option.disabled = m.status === "failed";
    return option;
  }));
  describeModel();
}

function describeModel() {
  const m = models.find((m) => `${m.name}:${m.version}` === $("model").value);
  if (!m) return;
  const shape = m.input_shape.join(" × ");
  const labels = m.label_names.length > 12 ? `${m.label_names.slice(0, 12).join(", ")}, …` : m.label_names.join(", ");
  const status = m.status === "serving" ? "serving" : m.status === "failed"
    ? `failed to load: ${m.error}` : "no worker serves it now (jobs wait in the queue)";
  $("model-info").textContent = `${m.kind} ${shape} · ${m.labels} labels: ${labels} · ${status}`;
}

$("model").addEventListener("change", describeModel);

// --- Submitting and following jobs -----------------------------------------------------------

function addCard(file) {
  const card = $("job-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".thumb").src = URL.createObjectURL(file);
  card.querySelector(".name").textContent = file.name;
  $("jobs").prepend(card);
  $("jobs-section").hidden = false;
  return card;
}

function show(card, job) {
  card.dataset.status = job.status;
  card.dataset.jobId = job.id;
  card.querySelector(".status").textContent = job.cached ? `${job.status} (cached)` : job.status;
  const result = job.result;
  if (result) {
    card.querySelector(".label").textContent = result.label;
    card.querySelector(".bars").replaceChildren(...result.top_k.map(bar));
  }
  if (job.error) card.querySelector(".error").textContent = `${job.error.code}: ${job.error.message}`;
}

function bar({ label, score }) {
  const row = document.createElement("div");
  row.className = "bar";
  const name = document.createElement("span");
  name.textContent = label;
  const track = document.createElement("span");
  track.className = "track";
  const fill = document.createElement("span");
  fill.style.width = `${(score * 100).toFixed(1)}%`;
  track.append(fill);
  const value = document.createElement("span");
  value.textContent = `${(score * 100).toFixed(1)}%`;
  row.append(name, track, value);
  return row;
}

function fail(card, text) {
  card.dataset.status = "error";
  card.querySelector(".status").textContent = "error";
  card.querySelector(".error").textContent = text;
}

async function submit(file) {
  const card = addCard(file);
  card.querySelector(".status").textContent = "uploading";
  const form = new FormData();
  form.append("file", file);
  form.append("model", $("model").value);
  let job;
  try {
    job = await api("/jobs", { method: "POST", body: form });
  } catch (error) {
    return fail(card, explain(error));
  }
  show(card, job);
  await follow(card, job);
  loadRecent();
}

// Long-poll until the job ends: a short wait while queued (to see it start), then a long one.
async function follow(card, job) {
  while (!TERMINAL.has(job.status)) {
    const wait = job.status === "queued" ? 2 : 20;
    try {
      job = await api(`/jobs/${job.id}?wait=${wait}`);
      show(card, job);
    } catch (error) {
      if (error.status !== 503 && error.status !== 0) return fail(card, explain(error));
      card.querySelector(".error").textContent = explain(error);
      await sleep(error.retryAfter || 2);
      card.querySelector(".error").textContent = "";
    }
  }
}

function submitAll(files) {
  notice("");
  for (const file of files) submit(file);
}

$("files").addEventListener("change", (event) => {
  submitAll([...event.target.files]);
  event.target.value = "";
});

const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  submitAll([...event.dataTransfer.files]);
});

// --- Recent jobs -----------------------------------------------------------------------------

async function loadRecent() {
  let page;
  try {
    page = await api("/jobs?limit=20");
  } catch (error) {
    if (error.status !== 401) notice(`Recent jobs: ${explain(error)}`);
    return;
  }
  $("recent").replaceChildren(...page.jobs.map((job) => {
    const row = document.createElement("tr");
    const cells = [
      new Date(job.created_at).toLocaleString(),
      `${job.model.name}:${job.model.version}`,
      job.status,
      job.result ? job.result.label : job.error ? job.error.code : "",
      job.result ? `${(job.result.score * 100).toFixed(1)}%` : "",
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.dataset.status = job.status;
    return row;
  }));
  $("recent-empty").hidden = page.jobs.length > 0;
}

$("refresh").addEventListener("click", loadRecent);

// --- Start -----------------------------------------------------------------------------------

async function start() {
  if (!localStorage.getItem(KEY)) return askForKey();
  try {
    await loadModels();
  } catch (error) {
    if (error.status !== 401) {
      notice(explain(error));
      setTimeout(start, (error.retryAfter || 5) * 1000);
    }
    return;
  }
  notice("");
  $("key-form").hidden = true;
  $("submit").hidden = $("recent-section").hidden = false;
  $("change-key").hidden = false;
  loadRecent();
}

start();
