// The studio's behaviour: submit requests, follow jobs live over SSE, build a model's
// params form from its JSON Schema, page the gallery as it scrolls, and the actions of
// a job's page. Plain browser APIs only; the server renders everything else.
"use strict";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

// -- the API -------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    const field = error.field ? ` (${error.field})` : "";
    throw new Error((error.message || `HTTP ${response.status}`) + field);
  }
  return body;
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
  const link = document.createElement("a");
  link.className = "output";
  link.href = `/gallery/${jobId}#output-${output.index}`;
  if (output.text != null) {  // a caption, an enhanced prompt, a description
    const text = document.createElement("blockquote");
    text.className = "text";
    if (output.tone) text.dataset.tone = output.tone;
    text.textContent = output.text;
    link.append(text);
    return link;
  }
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
}

function follow(card) {
  const id = card.dataset.job;
  if (!id || TERMINAL.has(card.dataset.status)) return;
  const progress = card.querySelector("progress");
  const message = card.querySelector(".message");
  const preview = card.querySelector(".preview");
  const prompt = card.querySelector(".prompt").textContent;
  const source = new EventSource(`/v1/jobs/${id}/events`);
  // A lost connection is an "error" event too, with no data: EventSource reconnects by
  // itself, resuming after the last event id it saw.
  const on = (type, handle) =>
    source.addEventListener(type, (event) => {
      if (event.data) handle(JSON.parse(event.data).data || {});
    });

  on("status", (data) => {
    setStatus(card, data.status);
    if (data.status === "running") message.textContent = ""; // a retry's note is stale now
  });
  on("progress", (data) => {
    progress.value = data.progress;
    message.textContent = data.message || "";
  });
  on("preview", (data) => {
    preview.src = `data:image/webp;base64,${data.image}`;
    preview.hidden = false;
  });
  on("output", (data) => {
    preview.hidden = true;
    const full = card.closest(".compare") !== null; // side by side: the whole image
    card.querySelector(".outputs").append(outputLink(id, data, prompt, full));
  });
  on("error", (data) => {
    message.textContent = data.will_retry ? `${data.message} (retrying)` : "";
    card.querySelector(".error").textContent = data.message || "";
  });
  on("done", (data) => {
    source.close();
    setStatus(card, data.status);
    if (data.status === "succeeded") progress.value = 1;
    if (data.status !== "failed") message.textContent = "";
    card.querySelector(".failure").hidden = data.status !== "failed";
    card.dispatchEvent(new CustomEvent("job-done", { bubbles: true, detail: { id } }));
  });
}

function newCard(job) {
  const card = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
  fillCard(card, job);
  return card;
}

function fillCard(card, job) {
  card.dataset.job = job.id;
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
  if (schema.description) label.title = schema.description;
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

function setUpGenerate(form) {
  const models = JSON.parse(document.getElementById("models").textContent);
  const byId = Object.fromEntries(models.map((m) => [m.id, m]));
  const params = document.getElementById("params");
  const chosen = () => [...form.querySelectorAll("input[name=model]:checked")].map((i) => i.value);
  const error = form.querySelector(".form-error");
  const inputs = document.getElementById("inputs");

  function showParams() {
    const ids = chosen();
    const model = ids.length === 1 ? byId[ids[0]] : null;
    const properties = model ? model.params_schema.properties || {} : {};
    // A param for some kinds only (a caption's tones, an enhancement's style) shows with those.
    const forKinds = model ? model.limits.param_kinds || {} : {};
    const kind = form.elements.kind.value;
    const fields = Object.entries(properties)
      .filter(([name]) => !forKinds[name] || forKinds[name].includes(kind))
      .map(([name, schema]) => paramField(name, schema));
    params.querySelector(".fields").replaceChildren(...fields);
    params.hidden = fields.length === 0;
  }
  // Only the models that do the chosen kind are offered.
  function offerModels() {
    const kind = form.elements.kind.value;
    const labels = [...form.querySelectorAll(".models label[data-kinds]")];
    for (const label of labels) {
      const offered = label.dataset.kinds.split(" ").includes(kind);
      label.hidden = !offered;
      if (!offered) label.querySelector("input").checked = false;
    }
    const visible = labels.filter((label) => !label.hidden);
    if (visible.length && !chosen().length) visible[0].querySelector("input").checked = true;
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

  function requestBody() {
    const value = (name) => form.elements[name]?.value.trim() || undefined;
    const ids = chosen();
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
    if (ids.length === 1) body.model = ids[0];
    else body.models = ids;
    for (const input of params.querySelectorAll("input, select")) {
      const param = paramValue(input);
      if (param !== undefined) body.params[input.name] = param;
    }
    return body;
  }

  for (const role of ["input", "mask"]) {
    form.elements[role].addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (!file) return;
      try {
        const asset = await upload(file);
        inputs.querySelector(`[data-role=${role}]`)?.remove();
        const image = Object.assign(document.createElement("img"), {
          src: asset.thumbnail_url,
          alt: role === "mask" ? "Mask" : "Input image",
        });
        Object.assign(image.dataset, { asset: asset.id, role });
        inputs.append(image);
      } catch (failure) {
        error.textContent = failure.message;
        error.hidden = false;
      }
    });
  }

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
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
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

// -- a job's page ----------------------------------------------------------------------

function setUpDetail(detail) {
  const request = JSON.parse(detail.dataset.request);
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

// -- the comparison: each column's time and cost once its job is done ------------------

function setUpCompare(compare) {
  compare.addEventListener("job-done", async (event) => {
    const job = await api(`/v1/jobs/${event.detail.id}`);
    const column = event.target.closest(".column");
    const seconds = job.timings.total_seconds;
    column.querySelector("[data-field=time]").textContent =
      seconds === null ? "—" : `${seconds.toFixed(1)} s`;
    column.querySelector("[data-field=cost]").textContent = `$${job.cost_usd.toFixed(4)}`;
  });
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
  document.querySelectorAll(".job[data-job]:not([data-job=''])").forEach(follow);
});
