// The studio's behaviour: submit requests, follow jobs live over SSE, build a model's
// params form from its JSON Schema, page the gallery as it scrolls, and the actions of
// a job's page. Plain browser APIs only; the server renders everything else.
"use strict";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

// -- the API -------------------------------------------------------------------------

// A refused request: the server's message in plain words, and the field at fault.
class Refused extends Error {
  constructor(error, status) {
    super(error.message || `The server answered ${status}.`);
    this.field = error.field || "";
    this.code = error.code || "";
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Refused(body.error || {}, response.status);
  return body;
}

// The job once it has ended (its event stream's "done"), as GET /v1/jobs/{id} has it.
function finished(jobId) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(`/v1/jobs/${jobId}/events`);
    source.addEventListener("done", () => {
      source.close();
      api(`/v1/jobs/${jobId}`).then(resolve, reject);
    });
  });
}

function submit(body) {
  return api("/v1/jobs", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  return api("/v1/assets", { method: "POST", body: form });
}

// -- live job cards ------------------------------------------------------------------

function outputLink(jobId, output, prompt, full = false) {
  if (output.text != null) {  // a caption, an enhanced prompt, a description: to copy
    const written = document.createElement("div");
    written.className = "output written";
    const text = document.createElement("blockquote");
    text.className = "text";
    if (output.tone) text.dataset.tone = output.tone;
    text.textContent = output.text;
    const copy = Object.assign(document.createElement("button"), { type: "button", textContent: "Copy" });
    copy.className = "copy-text link";
    written.append(text, copy);
    return written;
  }
  const link = document.createElement("a");
  link.className = "output";
  link.href = `/gallery/${jobId}#output-${output.index}`;
  const video = (output.content_type || "").startsWith("video/");
  const media = document.createElement(video ? "video" : "img");
  if (video) {
    Object.assign(media, { src: `/v1/assets/${output.asset_id}`, muted: true, loop: true });
  } else {
    const src = `/v1/assets/${output.asset_id}${full ? "" : "/thumbnail"}`;
    Object.assign(media, { src, alt: prompt });
  }
  if (output.width && output.height) media.style.aspectRatio = `${output.width} / ${output.height}`;
  link.append(media);
  return link;
}

function setStatus(card, status) {
  card.dataset.status = status;
  card.querySelector(".status").textContent = status;
  tell(card);
  card.dispatchEvent(new CustomEvent("job-status", { bubbles: true, detail: { status } }));
}

// -- how long, and how much longer: each live card's "when" line, once a second ------

function clock(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(whole / 60);
  const hours = Math.floor(minutes / 60);
  const two = (n) => String(n).padStart(2, "0");
  return hours ? `${hours}:${two(minutes % 60)}:${two(whole % 60)}` : `${minutes}:${two(whole % 60)}`;
}

// "queued, 2 ahead · 0:05", "attempt 1 of 3 failed · retrying in 4 s",
// "attempt 2 of 3 · 0:12 · about 0:20 left": what the job is doing, said plainly.
function tell(card) {
  const line = card.querySelector(".when");
  const status = card.dataset.status;
  if (!line) return;
  if (TERMINAL.has(status) || !card.dataset.job) {
    line.textContent = "";
    return;
  }
  const now = Date.now();
  const since = (moment) => (now - Date.parse(moment)) / 1000;
  const attempt = Number(card.dataset.attempt || 0);
  const most = Number(card.dataset.maxAttempts || 1);
  const parts = [];
  if (status === "queued") {
    const retryAt = card.dataset.retryAt ? Date.parse(card.dataset.retryAt) : 0;
    if (retryAt > now) {
      parts.push(`attempt ${attempt} of ${most} failed`, `retrying in ${Math.ceil((retryAt - now) / 1000)} s`);
    } else {
      const ahead = Number(card.dataset.position || 0) - 1;
      parts.push(ahead > 0 ? `queued, ${ahead} ahead` : "queued");
      if (card.dataset.created) parts.push(clock(since(card.dataset.created)));
    }
  } else if (status === "running") {
    if (most > 1 && attempt > 1) parts.push(`attempt ${attempt} of ${most}`);
    if (card.dataset.started) {
      const ran = since(card.dataset.started);
      parts.push(clock(ran));
      const done = card.querySelector("progress").value;
      if (done >= 0.05 && done < 1 && ran > 1) parts.push(`about ${clock((ran * (1 - done)) / done)} left`);
    }
  }
  line.textContent = parts.join(" · ");
}

setInterval(() => document.querySelectorAll(".job[data-job]").forEach(tell), 1000);

// Where a queued job waits in line is asked for now and then (events do not carry it).
async function askPosition(card) {
  while (card.dataset.status === "queued" && card.isConnected) {
    try {
      const job = await api(`/v1/jobs/${card.dataset.job}`);
      card.dataset.position = job.queue_position ?? "";
      tell(card);
    } catch {
      return;
    }
    await new Promise((resume) => setTimeout(resume, 3000));
  }
}

const EVENT_TYPES = ["status", "progress", "preview", "output", "error", "done"];

// What one event of its job does to a card.
function apply(card, type, data, event) {
  const id = card.dataset.job;
  const progress = card.querySelector("progress");
  const message = card.querySelector(".message");
  const preview = card.querySelector(".preview");
  if (type === "status") {
    if (data.status === "running") {
      message.textContent = ""; // a retry's note is stale now
      Object.assign(card.dataset, {
        attempt: data.attempt ?? card.dataset.attempt,
        maxAttempts: data.max_attempts ?? card.dataset.maxAttempts,
        started: event.created_at || new Date().toISOString(),
        retryAt: "",
      });
    }
    if (data.status === "queued") {
      card.dataset.retryAt = data.retry_at || "";
      askPosition(card);
    }
    setStatus(card, data.status);
  } else if (type === "progress") {
    progress.value = data.progress;
    message.textContent = data.message || "";
  } else if (type === "preview") {
    preview.src = `data:image/webp;base64,${data.image}`;
    preview.hidden = false;
  } else if (type === "output") {
    preview.hidden = true;
    const full = card.closest(".compare") !== null; // side by side: the whole image
    const prompt = card.querySelector(".prompt").textContent;
    card.querySelector(".outputs").append(outputLink(id, data, prompt, full));
  } else if (type === "error") {
    message.textContent = data.will_retry ? data.message : "";
    card.querySelector(".error").textContent = data.message || "";
  } else if (type === "done") {
    setStatus(card, data.status);
    if (data.status === "succeeded") progress.value = 1;
    if (data.status !== "failed") message.textContent = "";
    card.querySelector(".failure").hidden = data.status !== "failed";
    card.dispatchEvent(new CustomEvent("job-done", { bubbles: true, detail: { id } }));
  }
}

// Follow ``source``'s events, each applied to the card ``cardOf`` finds for it (none: it
// is ignored). A lost connection is an "error" event too, with no data: EventSource
// reconnects by itself, resuming after the last event id it saw.
function listen(source, cardOf) {
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (event) => {
      if (!event.data) return;
      const parsed = JSON.parse(event.data);
      const card = cardOf(parsed);
      if (card) apply(card, type, parsed.data || {}, parsed);
    });
  }
}

function follow(card) {
  const id = card.dataset.job;
  if (!id || TERMINAL.has(card.dataset.status)) return;
  const source = new EventSource(`/v1/jobs/${id}/events`);
  listen(source, () => card);
  source.addEventListener("done", () => source.close());
}

function newCard(job) {
  const card = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
  fillCard(card, job);
  return card;
}

function fillCard(card, job) {
  card.dataset.job = job.id;
  Object.assign(card.dataset, {
    created: job.created_at,
    started: job.started_at || "",
    attempt: job.attempt,
    maxAttempts: job.max_attempts,
    position: job.queue_position ?? "",
    retryAt: "",
  });
  card.dataset.request = JSON.stringify(job.request);
  setStatus(card, job.status);
  const link = card.querySelector(".model");
  link.href = `/gallery/${job.id}`;
  link.textContent = job.model;
  card.querySelector(".prompt").textContent = job.request.prompt || job.kind;
  card.querySelector("progress").value = job.progress;
  card.querySelector(".message").textContent = "";
  card.querySelector(".outputs").replaceChildren(
    ...job.outputs.map((o) => outputLink(job.id, o, job.request.prompt)),
  );
  card.querySelector(".failure").hidden = job.status !== "failed";
  card.querySelector(".error").textContent = job.error ? job.error.message : "";
}

async function retry(card) {
  const request = JSON.parse(card.dataset.request);
  try {
    const job = await submit({ ...request, cache: "bypass" });
    fillCard(card, job);
    follow(card);
  } catch (error) {
    card.querySelector(".error").textContent = error.message;
  }
}

async function cancel(card) {
  try {
    const job = await api(`/v1/jobs/${card.dataset.job}/cancel`, { method: "POST" });
    setStatus(card, job.status);
  } catch (error) {
    card.querySelector(".message").textContent = error.message; // it ended meanwhile, say
  }
}

// A text output (a caption, a description) copies with one click on its button.
document.addEventListener("click", async (event) => {
  const copy = event.target.closest("button.copy-text");
  if (!copy) return;
  event.preventDefault();
  await copyText(copy.previousElementSibling.textContent);
  copy.textContent = "Copied";
  setTimeout(() => (copy.textContent = "Copy"), 1500);
});

document.addEventListener("click", (event) => {
  const button = event.target.closest(".job .retry");
  if (button) retry(button.closest(".job"));
  const stop = event.target.closest(".job .cancel");
  if (stop) cancel(stop.closest(".job"));
});

// -- the generate form ---------------------------------------------------------------

function paramField(name, schema) {
  const label = document.createElement("label");
  label.textContent = schema.title || name;
  let input;
  if (Array.isArray(schema.enum)) {
    input = document.createElement("select");
    input.append(new Option("default", ""));
    for (const value of schema.enum) input.append(new Option(String(value), JSON.stringify(value)));
  } else if (schema.type === "boolean") {
    input = document.createElement("select");
    input.append(new Option("default", ""), new Option("yes", "true"), new Option("no", "false"));
  } else {
    input = document.createElement("input");
    if (schema.type === "integer" || schema.type === "number") {
      input.type = "number";
      input.step = schema.type === "integer" ? "1" : "any";
      if (schema.minimum !== undefined) input.min = schema.minimum;
      if (schema.maximum !== undefined) input.max = schema.maximum;
    }
    if (schema.type === "array") input.placeholder = "comma, separated";
    if (schema.default !== undefined) input.placeholder = String(schema.default);
  }
  input.name = name;
  input.dataset.type = schema.type || "string";
  label.append(input);
  if (schema.description) {
    const help = document.createElement("small");
    help.className = "help";
    help.textContent = schema.description;
    label.append(help);
  }
  return label;
}

function paramValue(input) {
  if (input.value === "") return undefined;
  if (input.tagName === "SELECT") return JSON.parse(input.value);
  if (input.dataset.type === "integer" || input.dataset.type === "number") return Number(input.value);
  if (input.dataset.type === "array") {
    return input.value.split(",").map((item) => item.trim()).filter((item) => item);
  }
  return input.value;
}

// "$0.08 · 2 images", "Free", or what is left of a budget it would pass.
function priceText(answer) {
  const outputs = answer.items.reduce((sum, item) => sum + item.outputs, 0);
  const digits = answer.total_usd < 0.1 ? 3 : 2; // a cent and a half shows as $0.015
  const cost = answer.total_usd ? `$${answer.total_usd.toFixed(digits)}` : "Free";
  const what = `${outputs} ${outputs === 1 ? "output" : "outputs"}`;
  if (!answer.fits_budget) {
    const tightest = answer.budgets.reduce((a, b) => (a.remaining_usd <= b.remaining_usd ? a : b));
    return `${cost} · ${what} · over your budget: $${tightest.remaining_usd.toFixed(2)} left`;
  }
  return `${cost} · ${what}`;
}

// Where the server's error for ``field`` belongs on the generate form (null: nowhere
// in particular, said above the button).
function fieldOf(form, field) {
  const [head, index, part, name] = field.split(".");
  const params = document.getElementById("params");
  const sections = [...params.querySelectorAll("fieldset[data-model]")];
  if (head === "params") return sections[0]?.querySelector(`[name="${index}"]`) || null;
  if (head === "models" && part === "params" && name) {
    return sections.find((s) => s.dataset.index === index)?.querySelector(`[name="${name}"]`) || null;
  }
  if (head === "model" || head === "models") return document.getElementById("models-field");
  if (head === "input_assets") return form.elements.input;
  const named = form.elements[head];
  return named instanceof Element ? named : null;
}

function clearFieldErrors(form) {
  for (const note of form.querySelectorAll(".field-error")) note.remove();
  for (const marked of form.querySelectorAll("[aria-invalid]")) {
    marked.removeAttribute("aria-invalid");
    marked.removeAttribute("aria-describedby");
  }
}

let fieldErrors = 0;
// The message next to the field at fault, the field marked invalid and focused.
function showFieldError(target, message) {
  const note = document.createElement("p");
  note.className = "field-error";
  note.id = `field-error-${++fieldErrors}`;
  note.textContent = message;
  if (target.tagName === "FIELDSET") target.append(note);
  else (target.closest("label") || target).after(note);
  target.setAttribute("aria-invalid", "true");
  target.setAttribute("aria-describedby", note.id);
  const details = target.closest("details");
  if (details) details.open = true;
  (target.tagName === "FIELDSET" ? target.querySelector("input:not([hidden])") : target)?.focus();
}

function setUpGenerate(form) {
  const models = JSON.parse(document.getElementById("models").textContent);
  const defaults = JSON.parse(document.getElementById("defaults").textContent);
  const byId = Object.fromEntries(models.map((m) => [m.id, m]));
  const params = document.getElementById("params");
  const chosen = () => [...form.querySelectorAll("input[name=model]:checked")].map((i) => i.value);
  const error = form.querySelector(".form-error");
  const inputs = document.getElementById("inputs");
  const sizeInput = form.elements.size;
  const sizes = document.getElementById("sizes");
  const commonSizes = [...sizes.options].map((o) => o.value);

  // One section of params per model ticked, labelled and explained from its schema; what
  // was typed stays when models are ticked or unticked.
  function showParams() {
    const typed = {};
    for (const input of params.querySelectorAll("[data-model] [name]")) {
      typed[`${input.closest("[data-model]").dataset.model} ${input.name}`] = input.value;
    }
    const ids = chosen();
    const kind = form.elements.kind.value;
    const sections = ids.map((id, index) => {
      const model = byId[id];
      const forKinds = model.limits.param_kinds || {}; // a caption's tones: with captions only
      const fields = Object.entries(model.params_schema.properties || {})
        .filter(([name]) => !forKinds[name] || forKinds[name].includes(kind))
        .map(([name, schema]) => paramField(name, schema));
      if (!fields.length) return null;
      const section = document.createElement("fieldset");
      Object.assign(section.dataset, { model: id, index: String(index) });
      const legend = document.createElement("legend");
      legend.textContent = ids.length === 1 ? "Model parameters" : `${model.title || id}: parameters`;
      const grid = document.createElement("div");
      grid.className = "fields";
      grid.append(...fields);
      section.append(legend, grid);
      for (const input of section.querySelectorAll("[name]")) {
        const value = typed[`${id} ${input.name}`];
        if (value !== undefined) input.value = value;
      }
      return section;
    });
    params.replaceChildren(...sections.filter((s) => s));
    // The size hint is the model's own; a model of fixed sizes offers only those.
    const only = ids.length === 1 ? byId[ids[0]] : null;
    sizeInput.placeholder = only ? only.sizes.default : "each model's default";
    const offered = only && only.sizes.fixed.length ? only.sizes.fixed : commonSizes;
    sizes.replaceChildren(...offered.map((size) => new Option(size, size)));
  }

  // Only the models that do the chosen kind are offered, the cheapest ticked at first.
  const hint = document.getElementById("compare-hint");
  function offerModels() {
    const kind = form.elements.kind.value;
    const labels = [...form.querySelectorAll(".models label[data-kinds]")];
    for (const label of labels) {
      const offered = label.dataset.kinds.split(" ").includes(kind);
      label.hidden = !offered;
      if (!offered) label.querySelector("input").checked = false;
    }
    const visible = labels.filter((label) => !label.hidden);
    if (!chosen().length && defaults[kind]) {
      form.querySelector(`input[name=model][value="${defaults[kind]}"]`).checked = true;
    }
    hint.textContent =
      visible.length > 1
        ? "Tick several to compare them side by side."
        : "Comparing needs a second model that does this: set one up (see “Not set up here”).";
  }
  // What the request would cost (POST /v1/estimate), shown beside Generate as it changes.
  const estimate = form.querySelector(".estimate");
  let estimating = null;
  async function showEstimate() {
    const body = requestBody();
    body.prompt ||= "…"; // priced before a word is typed: a price hardly depends on them
    const asked = JSON.stringify(body);
    estimating = asked;
    let answer;
    try {
      answer = await api("/v1/estimate", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: asked,
      });
    } catch {
      answer = null; // not a valid request yet: Generate will say why
    }
    if (estimating !== asked) return; // a newer request is being priced
    estimate.textContent = answer ? priceText(answer) : "";
    estimate.classList.toggle("over-budget", Boolean(answer && !answer.fits_budget));
  }
  let pending;
  const priceSoon = () => {
    clearTimeout(pending);
    pending = setTimeout(showEstimate, 250);
  };
  form.addEventListener("change", (event) => {
    if (event.target.name === "kind") offerModels();
    if (event.target.name === "kind" || event.target.name === "model") showParams();
    priceSoon();
  });
  form.addEventListener("input", priceSoon);
  offerModels();
  showParams();
  showEstimate();
  form.closest(".generate").classList.add("ready");

  function paramsOf(section) {
    const given = {};
    for (const input of section ? section.querySelectorAll("[name]") : []) {
      const param = paramValue(input);
      if (param !== undefined) given[input.name] = param;
    }
    return given;
  }

  function requestBody() {
    const value = (name) => form.elements[name]?.value.trim() || undefined;
    const ids = chosen();
    const sectionOf = (id) => params.querySelector(`fieldset[data-model="${id}"]`);
    const body = {
      kind: value("kind"),
      prompt: value("prompt") || "",
      negative_prompt: value("negative_prompt"),
      n: Number(value("n") || 1),
      size: value("size"),
      aspect_ratio: value("aspect_ratio"),
      seed: value("seed") === undefined ? undefined : Number(value("seed")),
      preset: value("preset"),
      params: {},
      input_assets: [...inputs.querySelectorAll("[data-role=input]")].map((i) => i.dataset.asset),
      mask: inputs.querySelector("[data-role=mask]")?.dataset.asset,
    };
    if (ids.length === 1) {
      body.model = ids[0];
      body.params = paramsOf(sectionOf(ids[0]));
    } else {
      body.models = ids.map((id) => {
        const own = paramsOf(sectionOf(id));
        return Object.keys(own).length ? { model: id, params: own } : id;
      });
    }
    return body;
  }

  function refused(failure) {
    const target = failure.field !== undefined ? fieldOf(form, failure.field) : null;
    if (target) {
      showFieldError(target, failure.message);
    } else {
      error.textContent = failure.message;
      error.hidden = false;
    }
  }

  async function take(file, role, field) {
    clearFieldErrors(form);
    try {
      const asset = await upload(file);
      inputs.querySelector(`[data-role=${role}]`)?.remove();
      addInput(asset.id, role);
      priceSoon();
    } catch (failure) {
      showFieldError(field, failure.message);
    }
  }
  for (const role of ["input", "mask"]) {
    form.elements[role].addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) take(file, role, event.target);
    });
  }
  // Dropped or pasted, an image is the input image (its file is uploaded at once).
  const drop = document.getElementById("drop");
  const imageOf = (items) => [...items].find((file) => file.type.startsWith("image/"));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = imageOf(event.dataTransfer.files);
    if (file) take(file, "input", form.elements.input);
  });
  document.addEventListener("paste", (event) => {
    const file = imageOf(event.clipboardData?.files || []);
    if (!file) return; // text pastes into the prompt as usual
    event.preventDefault();
    take(file, "input", form.elements.input);
  });
  // Input images are for the kinds that take them.
  const inputImages = document.getElementById("input-images");
  const showInputs = () => {
    const kind = form.elements.kind.value;
    inputImages.hidden = (kind === "image" || kind === "enhance") && !inputs.children.length;
  };
  form.addEventListener("change", (event) => {
    if (event.target.name === "kind") showInputs();
  });
  showInputs();

  // "Enhance my prompt": a text model writes a richer one, shown to review; "Use it"
  // puts it in the prompt (it is an ordinary enhance job, in the history and priced).
  const enhanceButton = form.querySelector("button.enhance");
  const enhanced = form.querySelector(".enhanced");
  enhanceButton?.addEventListener("click", async () => {
    clearFieldErrors(form);
    const prompt = form.elements.prompt.value.trim();
    if (!prompt) {
      showFieldError(form.elements.prompt, "Write a prompt to enhance first.");
      return;
    }
    enhanceButton.disabled = true;
    enhanceButton.textContent = "Enhancing…";
    try {
      const job = await api("/v1/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json", Prefer: "wait=60" },
        body: JSON.stringify({ kind: "enhance", model: enhanceButton.dataset.model, prompt }),
      });
      const done = job.status === "succeeded" ? job : await finished(job.id);
      if (done.status !== "succeeded") throw new Error(done.error?.message || `It ${done.status}.`);
      enhanced.querySelector("blockquote").textContent = done.outputs[0].text;
      enhanced.hidden = false;
    } catch (failure) {
      showFieldError(form.elements.prompt, failure.message);
    } finally {
      enhanceButton.disabled = false;
      enhanceButton.textContent = "Enhance my prompt";
    }
  });
  enhanced?.addEventListener("click", async (event) => {
    const action = event.target.closest("[data-enhanced]")?.dataset.enhanced;
    const text = enhanced.querySelector("blockquote").textContent;
    if (action === "use") {
      form.elements.prompt.value = text;
      priceSoon();
    }
    if (action === "copy") await copyText(text);
    if (action === "use" || action === "dismiss") enhanced.hidden = true;
  });

  // Ctrl+Enter (Cmd+Enter on a Mac) generates from anywhere in the form.
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    clearFieldErrors(form);
    if (!chosen().length) {
      showFieldError(document.getElementById("models-field"), "Choose a model.");
      return;
    }
    const body = requestBody();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const answer = await submit(body);
      const jobs = answer.jobs || [answer];
      const list = document.getElementById("jobs");
      for (const job of [...jobs].reverse()) {
        const card = newCard(job);
        list.prepend(card);
        follow(card);
      }
      const compare = document.querySelector(".compare-link");
      compare.hidden = !answer.group_id;
      if (answer.group_id) compare.querySelector("a").href = `/compare/${answer.group_id}`;
    } catch (failure) {
      refused(failure);
    } finally {
      button.disabled = false;
    }
  });
  form.refill = refill; // "use these settings" (below)

  // A job's settings back in the form (?use=<job id>, optionally &seed=<an image's seed>).
  async function refill(jobId, seed) {
    const job = await api(`/v1/jobs/${jobId}`);
    const request = job.request;
    form.elements.kind.value = request.kind;
    offerModels();
    for (const box of form.querySelectorAll("input[name=model]")) box.checked = box.value === request.model;
    for (const name of ["prompt", "negative_prompt", "size", "n"]) {
      form.elements[name].value = request[name] ?? (name === "n" ? 1 : "");
    }
    form.elements.seed.value = seed ?? request.seed ?? "";
    showParams();
    const section = params.querySelector(`fieldset[data-model="${request.model}"]`);
    for (const [name, value] of Object.entries(request.params || {})) {
      const input = section?.querySelector(`[name="${name}"]`);
      if (!input) continue;
      if (input.tagName === "SELECT") input.value = JSON.stringify(value);
      else input.value = Array.isArray(value) ? value.join(", ") : String(value);
    }
    inputs.replaceChildren();
    for (const asset of request.input_assets || []) addInput(asset, "input");
    if (request.mask) addInput(request.mask, "mask");
    showInputs();
    showEstimate();
    form.elements.prompt.focus();
  }
  function addInput(assetId, role) {
    const image = Object.assign(document.createElement("img"), {
      src: `/v1/assets/${assetId}/thumbnail`,
      alt: role === "mask" ? "Mask" : "Input image",
    });
    Object.assign(image.dataset, { asset: assetId, role });
    inputs.append(image);
  }
  const asked = new URLSearchParams(location.search);
  if (asked.get("use")) {
    refill(asked.get("use"), asked.get("seed") ?? undefined).catch(refused);
  }
}

// -- the gallery: the next page as the end comes into view ---------------------------

function setUpGallery(gallery) {
  const observer = new IntersectionObserver(async (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const more = entry.target;
      observer.unobserve(more);
      const response = await fetch(more.dataset.next, { credentials: "same-origin" });
      if (!response.ok) return;
      more.insertAdjacentHTML("afterend", await response.text());
      more.remove();
      watch();
    }
  }, { rootMargin: "600px" });
  const watch = () => gallery.querySelectorAll(".more[data-next]").forEach((m) => observer.observe(m));
  watch();
}

// -- the image viewer: a lightbox over the gallery and a job's page --------------------
// Zoom to fit (never enlarged past the image's own pixels), 1:1, with the wheel or a
// pinch, dragged to pan; previous and next through what the page shows; the image's
// actions beside it. Keys: ←/→, +/−, 0 (fit), 1 (1:1), Escape.

const VIEWER = `
<dialog class="viewer" aria-label="Image viewer">
  <div class="stage"><img alt=""></div>
  <aside class="side">
    <p class="where" aria-live="polite"></p>
    <p class="prompt"></p>
    <p class="meta"></p>
    <div class="zoom" role="group" aria-label="Zoom">
      <button type="button" data-zoom="fit">Fit</button>
      <button type="button" data-zoom="1">1:1</button>
      <button type="button" data-zoom="in" aria-label="Zoom in">+</button>
      <button type="button" data-zoom="out" aria-label="Zoom out">−</button>
    </div>
    <div class="actions">
      <a class="download" download>Download</a>
      <a class="use">Use these settings</a>
      <button type="button" data-copy="prompt">Copy prompt</button>
      <button type="button" data-copy="seed">Copy seed</button>
      <button type="button" class="fave" aria-pressed="false">♥ Favourite</button>
      <a class="details">Details</a>
    </div>
    <p class="copied" aria-live="polite"></p>
    <div class="steps">
      <button type="button" data-step="-1">Previous</button>
      <button type="button" data-step="1">Next</button>
    </div>
    <button type="button" class="close">Close</button>
  </aside>
</dialog>`;

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const field = Object.assign(document.createElement("textarea"), { value: text });
  document.body.append(field);
  field.select();
  document.execCommand("copy"); // a server reached over plain http: the older way
  field.remove();
}

function setUpViewer(selector) {
  document.body.insertAdjacentHTML("beforeend", VIEWER);
  const dialog = document.body.lastElementChild;
  const stage = dialog.querySelector(".stage");
  const image = stage.querySelector("img");
  let items = [];
  let at = 0;
  let view = null;
  let scale = 1;
  let fit = 1;
  let x = 0;
  let y = 0;

  const place = () => {
    image.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
    dialog.dataset.zoom = Math.abs(scale - fit) < 1e-6 ? "fit" : String(Math.round(scale * 100) / 100);
  };
  // Zoom to ``next``, keeping the stage point (px, py) (from its centre) where it is.
  function zoomTo(next, px = 0, py = 0) {
    const bounded = Math.min(8, Math.max(fit / 4, next));
    x = px - ((px - x) * bounded) / scale;
    y = py - ((py - y) * bounded) / scale;
    scale = bounded;
    place();
  }
  function fitNow() {
    const box = stage.getBoundingClientRect();
    fit = Math.min(1, box.width / view.width, box.height / view.height);
    scale = fit;
    x = 0;
    y = 0;
    place();
  }

  function show(index) {
    at = (index + items.length) % items.length;
    view = JSON.parse(items[at].dataset.view);
    image.src = view.src;
    image.alt = view.prompt || "Image";
    Object.assign(image.style, { width: `${view.width}px`, height: `${view.height}px` });
    dialog.querySelector(".where").textContent = `${at + 1} of ${items.length}`;
    dialog.querySelector(".prompt").textContent = view.prompt || "";
    const seed = view.seed === null ? "" : ` · seed ${view.seed}`;
    dialog.querySelector(".meta").textContent = `${view.model} · ${view.width}×${view.height}${seed}`;
    Object.assign(dialog.querySelector(".download"), { href: view.src, download: view.download });
    const use = `/?use=${view.job}${view.seed === null ? "" : `&seed=${view.seed}`}`;
    dialog.querySelector(".use").href = use;
    dialog.querySelector(".details").href = view.page;
    dialog.querySelector("[data-copy=seed]").hidden = view.seed === null;
    const heart = dialog.querySelector(".fave");
    Object.assign(heart.dataset, { job: view.job, index: String(view.index) });
    const tileHeart = document.querySelector(
      `.fave[data-job="${view.job}"][data-index="${view.index}"]:not(.viewer .fave)`,
    );
    heart.setAttribute("aria-pressed", tileHeart ? tileHeart.getAttribute("aria-pressed") : String(view.favourite));
    dialog.querySelector(".copied").textContent = "";
    for (const step of dialog.querySelectorAll("[data-step]")) step.disabled = items.length < 2;
    fitNow();
  }

  function open(element) {
    items = [...document.querySelectorAll(selector)];
    if (!dialog.open) dialog.showModal();
    show(items.indexOf(element));
  }

  document.addEventListener("click", (event) => {
    const element = event.target.closest(selector);
    if (!element || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault(); // the link still opens the image's page in a new tab
    open(element);
  });
  dialog.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("close")) dialog.close();
    if (button.dataset.step) show(at + Number(button.dataset.step));
    const zoom = button.dataset.zoom;
    if (zoom === "fit") fitNow();
    if (zoom === "1") zoomTo(1);
    if (zoom === "in" || zoom === "out") zoomTo(scale * (zoom === "in" ? 1.5 : 1 / 1.5));
    if (button.dataset.copy) {
      const text = button.dataset.copy === "seed" ? String(view.seed) : view.prompt || "";
      await copyText(text);
      dialog.querySelector(".copied").textContent = `Copied the ${button.dataset.copy}.`;
    }
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea")) return;
    const keys = {
      ArrowLeft: () => show(at - 1),
      ArrowRight: () => show(at + 1),
      "+": () => zoomTo(scale * 1.5),
      "=": () => zoomTo(scale * 1.5),
      "-": () => zoomTo(scale / 1.5),
      0: fitNow,
      1: () => zoomTo(1),
    };
    const act = keys[event.key];
    if (act) {
      event.preventDefault();
      act();
    }
  });
  const fromCentre = (event) => {
    const box = stage.getBoundingClientRect();
    return [event.clientX - box.left - box.width / 2, event.clientY - box.top - box.height / 2];
  };
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoomTo(scale * Math.exp(-event.deltaY / 300), ...fromCentre(event));
  }, { passive: false });
  // One pointer drags; two pinch (their distance scales the image).
  const pointers = new Map();
  let pinched = 0;
  stage.addEventListener("pointerdown", (event) => {
    stage.setPointerCapture(event.pointerId);
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
  });
  stage.addEventListener("pointermove", (event) => {
    const last = pointers.get(event.pointerId);
    if (!last) return;
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const distance = Math.hypot(a[0] - b[0], a[1] - b[1]);
      if (pinched) zoomTo((scale * distance) / pinched);
      pinched = distance;
      return;
    }
    x += event.clientX - last[0];
    y += event.clientY - last[1];
    place();
  });
  const release = (event) => {
    pointers.delete(event.pointerId);
    pinched = 0;
  };
  stage.addEventListener("pointerup", release);
  stage.addEventListener("pointercancel", release);
  window.addEventListener("resize", () => dialog.open && fitNow());
}

// -- favourites, selection, collections ------------------------------------------------

async function setFavourite(job, index, favourite) {
  await api(`/v1/jobs/${job}/outputs/${index}/favourite`, { method: favourite ? "PUT" : "DELETE" });
  // Every heart of this output on the page (a tile, the viewer) says so.
  for (const heart of document.querySelectorAll(`.fave[data-job="${job}"][data-index="${index}"]`)) {
    heart.setAttribute("aria-pressed", String(favourite));
  }
}

document.addEventListener("click", async (event) => {
  const heart = event.target.closest(".fave[data-job]");
  if (!heart) return;
  const favourite = heart.getAttribute("aria-pressed") !== "true";
  try {
    await setFavourite(heart.dataset.job, heart.dataset.index, favourite);
  } catch (failure) {
    heart.title = failure.message;
  }
});

// Download ``body``'s outputs as one zip (POST /v1/archives).
async function downloadZip(items) {
  const response = await fetch("/v1/archives", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ items }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Refused(body.error || {}, response.status);
  }
  const link = Object.assign(document.createElement("a"), {
    href: URL.createObjectURL(await response.blob()),
    download: "imagemill.zip",
  });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

async function newCollection(name) {
  return api("/v1/collections", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
}

function setUpSelection(bar) {
  const error = bar.querySelector(".form-error");
  const picked = () => [...document.querySelectorAll(".tile .pick:checked")];
  const items = () =>
    picked().map((box) => {
      const [job_id, index] = box.value.split(":");
      return { job_id, index: Number(index) };
    });
  const show = () => {
    const count = picked().length;
    bar.hidden = count === 0;
    bar.querySelector(".count").textContent = `${count} selected`;
    for (const box of document.querySelectorAll(".tile .pick")) {
      box.closest(".tile").classList.toggle("picked", box.checked);
    }
  };
  document.addEventListener("change", (event) => {
    if (event.target.matches(".tile .pick")) show();
  });
  const file = bar.querySelector("select[name=collection]");
  const actions = {
    favourite: async () => {
      for (const { job_id, index } of items()) await setFavourite(job_id, index, true);
      return "Marked as favourites.";
    },
    zip: async () => {
      await downloadZip(items());
      return "";
    },
    delete: async () => {
      const jobs = [...new Set(items().map((item) => item.job_id))];
      if (!confirm(`Delete ${jobs.length === 1 ? "this job" : `these ${jobs.length} jobs`} and their images?`)) {
        return "";
      }
      for (const job of jobs) {
        await api(`/v1/jobs/${job}`, { method: "DELETE" });
        document.querySelectorAll(`.tile[data-job="${job}"]`).forEach((tile) => tile.remove());
      }
      return "";
    },
    unfile: async (button) => {
      for (const { job_id, index } of items()) {
        await api(`/v1/collections/${button.dataset.collection}/items/${job_id}/${index}`, { method: "DELETE" });
        document.querySelector(`.tile[data-job="${job_id}"][data-index="${index}"]`)?.remove();
      }
      return "";
    },
    clear: async () => "",
  };
  bar.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-selected]");
    if (!button) return;
    error.hidden = true;
    button.disabled = true;
    try {
      await actions[button.dataset.selected](button);
      if (button.dataset.selected !== "favourite") {
        for (const box of picked()) box.checked = false;
      }
      show();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  file.addEventListener("change", async () => {
    let target = file.value;
    if (!target) return;
    error.hidden = true;
    try {
      if (target === "new") {
        const name = prompt("Name of the new collection");
        if (!name) {
          file.value = "";
          return;
        }
        const made = await newCollection(name);
        file.insertBefore(new Option(made.name, made.id), file.querySelector("option[value=new]"));
        target = made.id;
      }
      const filed = await api(`/v1/collections/${target}/items`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ items: items() }),
      });
      bar.querySelector(".count").textContent = `Added to ${filed.name} (${filed.size} in all).`;
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
    file.value = "";
  });
  show();
}

function setUpCollections() {
  const form = document.getElementById("new-collection");
  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = form.querySelector(".form-error");
    clearFieldErrors(form);
    try {
      const made = await newCollection(form.elements.name.value.trim());
      location.assign(`/collections/${made.id}`);
    } catch (failure) {
      if (failure.field === "name") showFieldError(form.elements.name, failure.message);
      else {
        error.textContent = failure.message;
        error.hidden = false;
      }
    }
  });
  const head = document.querySelector(".collection-head");
  head?.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-collection-action]");
    if (!button) return;
    const id = head.dataset.collection;
    const error = head.querySelector(".form-error");
    error.hidden = true;
    try {
      if (button.dataset.collectionAction === "rename") {
        const name = prompt("New name", head.querySelector("h1").textContent);
        if (!name) return;
        const renamed = await api(`/v1/collections/${id}`, {
          method: "PATCH",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name }),
        });
        head.querySelector("h1").textContent = renamed.name;
        document.title = `${renamed.name} · imagemill studio`;
      } else if (confirm("Delete this collection? Its images stay in the gallery.")) {
        await api(`/v1/collections/${id}`, { method: "DELETE" });
        location.assign("/collections");
      }
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
}

// -- presets: make, delete, copy a style ------------------------------------------------

function setUpPresets(form) {
  const error = form.querySelector(".form-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    clearFieldErrors(form);
    const value = (name) => form.elements[name].value.trim() || undefined;
    const body = {
      name: value("name"),
      prompt_template: value("prompt_template"),
      negative_prompt: value("negative_prompt"),
      model: value("model"),
      size: value("size"),
    };
    try {
      await api("/v1/presets", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      location.reload();
    } catch (failure) {
      const field = form.elements[failure.field];
      if (field instanceof Element) showFieldError(field, failure.message);
      else {
        error.textContent = failure.message;
        error.hidden = false;
      }
    }
  });
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-preset-action]");
    if (!button) return;
    const id = button.closest("[data-preset]").dataset.preset;
    try {
      if (button.dataset.presetAction === "delete") {
        if (!confirm("Delete this preset?")) return;
        await api(`/v1/presets/${id}`, { method: "DELETE" });
      } else {
        await api(`/v1/presets/${id}/copy`, { method: "POST" });
      }
      location.reload();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
}

// -- a job's page ----------------------------------------------------------------------

function setUpDetail(detail) {
  const request = JSON.parse(detail.dataset.request);
  // While the job runs, its facts follow it; once it ends, the page shows all it made.
  detail.addEventListener("job-status", (event) => {
    detail.querySelector("[data-field=status]").textContent = event.detail.status;
  });
  // (A retry from its card is a new job: its page, once done.)
  detail.addEventListener("job-done", (event) => location.assign(`/gallery/${event.detail.id}`));
  const error = detail.querySelector(".form-error");
  const actions = {
    rerun: () => submit({ ...request, cache: "bypass" }),
    vary: () => submit({ ...request, seed: Math.floor(Math.random() * 2 ** 32) }),
    upscale: (button) =>
      submit({ kind: "upscale", model: button.dataset.model, input_assets: [button.dataset.asset] }),
    video: (button) =>
      submit({
        kind: "video",
        model: button.dataset.model,
        prompt: request.prompt,
        input_assets: [button.dataset.asset],
      }),
    delete: async () => {
      if (!confirm("Delete this job and its images?")) return null;
      await api(`/v1/jobs/${detail.dataset.job}`, { method: "DELETE" });
      location.assign("/gallery");
      return null;
    },
  };
  detail.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    error.hidden = true;
    button.disabled = true;
    try {
      const job = await actions[button.dataset.action](button);
      if (job) location.assign(`/gallery/${job.id}`);
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

// -- a batch: its progress, and every item's card, from one event stream -------------------

function setUpBatch(batch) {
  const id = batch.dataset.batch;
  const bar = batch.querySelector(".batch-progress");
  const counts = batch.querySelector(".counts");
  const cardOf = (event) => batch.querySelector(`.job[data-job="${event.job_id}"]`);
  if (TERMINAL.has(batch.dataset.status)) return;
  const source = new EventSource(`/v1/batches/${id}/events`);
  listen(source, cardOf);
  source.addEventListener("batch", (event) => {
    const tally = JSON.parse(event.data);
    bar.value = tally.progress;
    batch.dataset.status = tally.status;
    batch.querySelector(".batch-status").textContent = tally.status;
    counts.textContent = Object.entries(tally.counts)
      .filter(([, count]) => count)
      .map(([status, count]) => `${count} ${status}`)
      .join(" · ");
  });
  source.addEventListener("done", (event) => {
    if (JSON.parse(event.data).batch_id) source.close(); // the batch's own, not an item's
  });
  batch.querySelector("[data-batch-action=cancel]")?.addEventListener("click", async (event) => {
    event.target.disabled = true;
    await api(`/v1/batches/${id}/cancel`, { method: "POST" }).catch(() => null);
  });
}

// -- the comparison: every image zoomed and panned together; a before/after slider -------

function setUpCompare(compare) {
  // A column still running is a live card; once its job ends, the page shows its image.
  compare.addEventListener("job-done", () => location.reload());
  const images = [...compare.querySelectorAll(".frame img")];
  let scale = 1; // 1: each image fits its frame
  let x = 0;
  let y = 0;
  const place = () => {
    for (const image of images) image.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
    compare.dataset.zoom = scale === 1 ? "fit" : String(Math.round(scale * 100) / 100);
  };
  const zoomTo = (next) => {
    const bounded = Math.min(16, Math.max(1, next));
    x = (x * bounded) / scale;
    y = (y * bounded) / scale;
    scale = bounded;
    if (scale === 1) x = y = 0;
    place();
  };
  const actual = () => {
    const first = images[0];
    return first && first.naturalWidth ? first.naturalWidth / first.getBoundingClientRect().width * scale : 1;
  };
  document.querySelector(".compare-tools")?.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const zoom = button.dataset.zoom;
    if (zoom === "fit") zoomTo(1);
    if (zoom === "1") zoomTo(actual());
    if (zoom === "in" || zoom === "out") zoomTo(scale * (zoom === "in" ? 1.5 : 1 / 1.5));
    if (button.classList.contains("slider-toggle")) {
      const on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(on));
      document.querySelector(".slider").hidden = !on;
    }
  });
  for (const frame of compare.querySelectorAll(".frame")) {
    frame.addEventListener("wheel", (event) => {
      event.preventDefault();
      zoomTo(scale * Math.exp(-event.deltaY / 300));
    }, { passive: false });
    let last = null;
    frame.addEventListener("pointerdown", (event) => {
      frame.setPointerCapture(event.pointerId);
      last = [event.clientX, event.clientY];
    });
    frame.addEventListener("pointermove", (event) => {
      if (!last || scale === 1) return;
      x += event.clientX - last[0];
      y += event.clientY - last[1];
      last = [event.clientX, event.clientY];
      place();
    });
    frame.addEventListener("pointerup", () => (last = null));
    frame.addEventListener("pointercancel", () => (last = null));
  }
  const slider = document.querySelector(".slider");
  slider?.querySelector("input").addEventListener("input", (event) => {
    slider.style.setProperty("--split", `${event.target.value}%`);
  });
  place();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("generate");
  if (form) setUpGenerate(form);
  const gallery = document.getElementById("gallery");
  if (gallery) setUpGallery(gallery);
  const detail = document.querySelector(".detail");
  if (detail) setUpDetail(detail);
  const compare = document.querySelector(".compare");
  if (compare) setUpCompare(compare);
  const batch = document.querySelector(".batch[data-batch]");
  if (batch) setUpBatch(batch);
  if (gallery || detail) setUpViewer("[data-view]");
  const selection = document.querySelector(".selection");
  if (selection) setUpSelection(selection);
  setUpCollections();
  const presets = document.getElementById("new-preset");
  if (presets) setUpPresets(presets);
  const followed = batch ? ".job[data-job]:not(.batch .job)" : ".job[data-job]";
  document.querySelectorAll(`${followed}:not([data-job=''])`).forEach(follow);
});
