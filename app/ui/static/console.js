// The faceverify web console: plain JavaScript over the service's own API, with the key kept for the
// browser session only. Every request carries the key; what the key may not do is shown as the service
// answers it (401, 403), never hidden.
"use strict";

const KEY = "faceverify.key";
const pages = ["verify", "identify", "model"];

function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

function say(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// A failed call's message as the service words it: status, stable code, message.
class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("X-API-Key", apiKey());
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
  }
  return body;
}

function percent(rate) {
  if (rate === null || rate === undefined) return "uncalibrated";
  return `${(rate * 100).toPrecision(2)}%`;
}

function fixed(value) {
  return Number(value).toFixed(3);
}

// Pages

function show(page) {
  if (!pages.includes(page)) page = "verify";
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (page === "model") loadModels();
}

async function busy(form, work) {
  // The last answer goes while the next is worked out: what shows is always this request's.
  document.getElementById(form.dataset.result).hidden = true;
  const button = form.querySelector("button[type=submit]");
  const progress = form.querySelector("progress");
  button.disabled = true;
  progress.hidden = false;
  form.setAttribute("aria-busy", "true");
  say("Processing…");
  try {
    await work();
    say("");
  } catch (error) {
    say(error.message, true);
  } finally {
    button.disabled = false;
    progress.hidden = true;
    form.removeAttribute("aria-busy");
  }
}

// Drawing

async function drawPhoto(canvas, file, boxes) {
  const bitmap = await createImageBitmap(file);
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const line = Math.max(2, Math.round(Math.max(bitmap.width, bitmap.height) / 250));
  context.font = `${Math.max(12, line * 7)}px system-ui, sans-serif`;
  for (const { box, colour, dashed, label } of boxes) {
    const [x1, y1, x2, y2] = box;
    context.lineWidth = line;
    context.strokeStyle = colour;
    context.setLineDash(dashed ? [line * 3, line * 2] : []);
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (label) {
      const height = line * 9;
      const width = context.measureText(label).width + line * 2;
      const top = y1 >= height ? y1 - height : y2;
      context.fillStyle = colour;
      context.fillRect(x1, top, width, height);
      context.fillStyle = "#fff";
      context.fillText(label, x1 + line, top + height - line * 2);
    }
  }
}

function sameBox(a, b) {
  return a.every((value, n) => Math.abs(value - b[n]) < 1);
}

async function detect(file) {
  const form = new FormData();
  form.append("image", file);
  try {
    return (await api("/detect", { method: "POST", body: form })).faces;
  } catch {
    return []; // the outlines of the other faces are a courtesy: the answer stands without them
  }
}

// Verify

async function verify(event) {
  event.preventDefault();
  const form = event.target;
  await busy(form, async () => {
    const data = new FormData(form);
    const [answer, facesA, facesB] = await Promise.all([
      api("/verify", { method: "POST", body: data }),
      detect(data.get("image_a")),
      detect(data.get("image_b")),
    ]);
    const point = answer.operating_point;
    const verdict = document.getElementById("verify-verdict");
    verdict.textContent = answer.match ? "Match: the same person" : "No match";
    verdict.className = `verdict ${answer.match ? "match" : "nomatch"}`;
    document.getElementById("verify-detail").textContent =
      `Similarity ${fixed(answer.similarity)}; ${point.score} score ${fixed(answer.score)} against the ` +
      `threshold ${fixed(answer.threshold)} (false-accept rate ${percent(answer.threshold_far)}, ` +
      `rule ${point.rule}; model ${answer.model_id})`;
    const colour = answer.match ? "#0a7d32" : "#b3261e";
    const sides = [
      ["verify-canvas-a", "image_a", facesA],
      ["verify-canvas-b", "image_b", facesB],
    ];
    for (const [id, field, faces] of sides) {
      const chosen = answer[field].face.box;
      const others = faces.filter((face) => !sameBox(face.box, chosen));
      const boxes = [
        ...others.map((face) => ({ box: face.box, colour: "#777", dashed: true })),
        { box: chosen, colour, label: "compared" },
      ];
      const canvas = document.getElementById(id);
      await drawPhoto(canvas, data.get(field), boxes);
      canvas.setAttribute(
        "aria-label",
        `${answer[field].faces_found} faces found; the compared one is boxed, the others outlined`,
      );
    }
    document.getElementById("verify-result").hidden = false;
  });
}

// Identify

async function identify(event) {
  event.preventDefault();
  const form = event.target;
  await busy(form, async () => {
    const data = new FormData(form);
    const misses = data.get("include_misses") === "on";
    data.set("include_misses", misses ? "true" : "false");
    data.set("faces", "all");
    const answer = await api("/identify", { method: "POST", body: data });
    const faces = answer.faces || [];
    const list = document.getElementById("identify-faces");
    list.replaceChildren();
    const boxes = [];
    for (const [number, face] of faces.entries()) {
      const best = face.candidates[0];
      const known = face.match && best;
      const label = known ? `${number + 1}: ${best.name || best.subject_id} ${fixed(best.similarity)}` : `${number + 1}: unknown`;
      boxes.push({ box: face.face.box, colour: known ? "#0a7d32" : "#b3261e", label });
      const item = document.createElement("li");
      const heading = document.createElement("strong");
      heading.textContent = known ? `${best.name || best.subject_id}` : "unknown";
      item.append(heading);
      if (face.candidates.length) {
        const candidates = document.createElement("ul");
        for (const candidate of face.candidates) {
          const row = document.createElement("li");
          row.textContent =
            `${candidate.subject_id}${candidate.name ? ` (${candidate.name})` : ""}: similarity ` +
            `${fixed(candidate.similarity)}, score ${fixed(candidate.score)}` +
            (candidate.match ? ", a match" : ", below the threshold");
          candidates.append(row);
        }
        item.append(candidates);
      }
      list.append(item);
    }
    const canvas = document.getElementById("identify-canvas");
    await drawPhoto(canvas, data.get("image"), boxes);
    canvas.setAttribute("aria-label", `${faces.length} faces, each labelled with its best candidate or unknown`);
    document.getElementById("identify-detail").textContent =
      `${faces.length} faces in collection ${answer.collection}; a match needs a score of at least ` +
      `${fixed(answer.threshold)} (FPIR ${percent(answer.fpir)}, ${answer.operating_point.score} scores)`;
    document.getElementById("identify-result").hidden = false;
  });
}

// Models

function definitionList(pairs) {
  const list = document.createElement("dl");
  for (const [term, value] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  return list;
}

async function loadModels() {
  const target = document.getElementById("model-list");
  try {
    const ready = await api("/ready");
    target.replaceChildren();
    for (const model of ready.models) {
      const card = document.createElement("article");
      card.className = "model";
      const title = document.createElement("h3");
      title.textContent = `${model.name || model.model_id}${model.default ? " (default)" : ""}`;
      card.append(
        title,
        definitionList([
          ["model id", model.model_id],
          ["embedding", `${model.embedding_size} floats from a ${model.chip_size} px chip`],
          ["alignment", model.alignment || "-"],
          ["runs on", model.execution_providers.join(", ")],
          ["calibrated on", model.calibrated_on || "not calibrated"],
          ["licence", model.licence],
          [
            "verify decides at",
            `${model.verify.score} ${fixed(model.verify.threshold)} (FAR ${percent(model.verify.far)}, ` +
              `TAR ${percent(model.verify.tar)})`,
          ],
        ]),
      );
      const table = document.createElement("table");
      table.innerHTML = "<caption>Stated operating points</caption><thead><tr><th scope='col'>FAR</th>" +
        "<th scope='col'>TAR</th><th scope='col'>score</th><th scope='col'>threshold</th></tr></thead>";
      const body = document.createElement("tbody");
      for (const point of model.stated) {
        const row = document.createElement("tr");
        for (const value of [percent(point.far), percent(point.tar), point.score, fixed(point.threshold)]) {
          const cell = document.createElement("td");
          cell.textContent = value;
          row.append(cell);
        }
        body.append(row);
      }
      table.append(body);
      card.append(table);
      target.append(card);
    }
    const note = document.createElement("p");
    note.textContent = `Identify holds an FPIR of ${percent(ready.identify_fpir)} by default, on ` +
      `${ready.score_normalisation ? "cohort-normalised" : "cosine"} scores; vectors searched on ${ready.index_device}.`;
    target.append(note);
  } catch (error) {
    say(error.message, true);
  }
}

// Wiring

function dropZones() {
  for (const zone of document.querySelectorAll(".drop")) {
    const input = zone.querySelector("input[type=file]");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      if (event.dataTransfer.files.length) input.files = event.dataTransfer.files;
    });
  }
}

function keyForm() {
  const state = document.getElementById("key-state");
  const input = document.getElementById("api-key");
  const shown = () => {
    state.textContent = apiKey() ? "a key is in use for this session" : "no key";
  };
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = "";
    shown();
    if (location.hash === "#model") loadModels();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    shown();
  });
  shown();
}

document.addEventListener("DOMContentLoaded", () => {
  keyForm();
  dropZones();
  document.getElementById("verify-form").addEventListener("submit", verify);
  document.getElementById("identify-form").addEventListener("submit", identify);
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1));
});
