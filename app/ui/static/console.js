// The faceverify web console: plain JavaScript over the service's own API, with the key kept for the
// browser session only. Every request carries the key; what the key may not do is shown as the service
// answers it (401, 403), never hidden.
"use strict";

const KEY = "faceverify.key";
const pages = ["verify", "identify", "enroll", "gallery", "model"];

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
  constructor(status, code, message, field) {
    super(`${status} ${code}: ${message}${field ? ` (${field})` : ""}`);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("X-API-Key", apiKey());
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText, error.field);
  }
  return body;
}

const percentFormat = new Intl.NumberFormat("en", { maximumSignificantDigits: 3 });

function percent(rate) {
  if (rate === null || rate === undefined) return "uncalibrated";
  return `${percentFormat.format(rate * 100)}%`;
}

function fixed(value) {
  return Number(value).toFixed(3);
}

// Pages

function show(page, moved = false) {
  if (!pages.includes(page)) page = "verify";
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.dataset.page !== page;
  }
  const heading = document.querySelector(`#page-${page} h2`);
  document.title = `${heading.textContent} - faceverify console`;
  if (moved) heading.focus(); // a person who followed a link lands on the page's heading
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (page === "model") loadModels();
  if (page === "gallery") loadCollections();
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
    say((await work()) || "Done");
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
  try {
    await draw(canvas, file, boxes);
  } catch {
    // The answer stands without its picture (a photo the server reads and this browser cannot).
    canvas.width = 0;
    canvas.height = 0;
    canvas.setAttribute("aria-label", "this browser cannot show the photo");
  }
}

async function draw(canvas, file, boxes) {
  const bitmap = await createImageBitmap(file);
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
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
      canvas.dataset.outlined = String(others.length);
      await drawPhoto(canvas, data.get(field), boxes);
      canvas.setAttribute(
        "aria-label",
        `${answer[field].faces_found} faces found; the compared one is boxed, the others outlined`,
      );
    }
    document.getElementById("verify-result").hidden = false;
    return verdict.textContent;
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
    return `${faces.length} faces: ${faces.filter((face) => face.match).length} identified`;
  });
}

// Enroll

async function enroll(event) {
  event.preventDefault();
  const form = event.target;
  await busy(form, async () => {
    const data = new FormData(form);
    data.set("create_collection", data.get("create_collection") === "on" ? "true" : "false");
    if (!String(data.get("metadata") || "").trim()) data.delete("metadata");
    if (!String(data.get("name") || "").trim()) data.delete("name");
    let answer;
    try {
      answer = await api("/enroll", { method: "POST", body: data });
    } catch (error) {
      // A refused photo names itself (field images[N]): say which one, by its file name.
      const match = /^images\[(\d+)\]$/.exec(error.field || "");
      const photos = data.getAll("images");
      if (match && photos[Number(match[1])]) error.message += ` (the photo ${photos[Number(match[1])].name})`;
      throw error;
    }
    const photos = data.getAll("images");
    const target = document.getElementById("enroll-faces");
    target.replaceChildren();
    for (const face of answer.faces) {
      const number = Number(/\d+/.exec(face.field)[0]); // images[N]: the photo it came from
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `the face taken from ${photos[number].name}`);
      const caption = document.createElement("figcaption");
      caption.textContent =
        `${photos[number].name}: face ${face.face_id}` +
        (face.duplicate ? " (this photo was enrolled already: nothing new stored)" : "") +
        `, ${face.faces_found} faces found`;
      figure.append(canvas, caption);
      target.append(figure);
      await drawPhoto(canvas, photos[number], [{ box: face.box, colour: "#0a7d32", label: "taken" }]);
    }
    document.getElementById("enroll-detail").textContent =
      `${answer.subject_id} in ${answer.collection}: ${answer.face_ids.length} faces (model ${answer.model_id})`;
    document.getElementById("enroll-result").hidden = false;
    return `Enrolled ${answer.subject_id}`;
  });
}

// Gallery

const gallery = { collection: null, offset: 0, limit: 20, total: 0, subject: null, subjectCollection: null, search: "" };
let thumbnails = []; // object URLs shown now, revoked when they go
const latest = { subject: 0, models: 0, collection: 0 };

function dropThumbnails() {
  for (const url of thumbnails) URL.revokeObjectURL(url);
  thumbnails = [];
}

function hideSubject() {
  document.getElementById("subject-panel").hidden = true;
  document.getElementById("subject-faces").replaceChildren();
  dropThumbnails();
  gallery.subject = gallery.subjectCollection = null;
}

// What one key was shown goes when the key changes.
function reset() {
  for (const id of ["verify-result", "identify-result", "enroll-result", "subjects-panel"]) {
    document.getElementById(id).hidden = true;
  }
  for (const id of ["identify-faces", "enroll-faces", "model-list"]) document.getElementById(id).replaceChildren();
  document.querySelector("#collections tbody").replaceChildren();
  document.querySelector("#subjects tbody").replaceChildren();
  hideSubject();
  Object.assign(gallery, { collection: null, offset: 0, total: 0, search: "" });
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
}

function button(text, action) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.addEventListener("click", action);
  return element;
}

async function guarded(work) {
  try {
    await work();
  } catch (error) {
    say(error.message, true);
  }
}

async function loadCollections() {
  const body = document.querySelector("#collections tbody");
  body.replaceChildren();
  await guarded(async () => {
    const collections = await api("/collections");
    body.replaceChildren();
    for (const collection of collections) {
      const row = document.createElement("tr");
      cell(row, collection.name);
      cell(row, collection.model_id);
      cell(row, String(collection.faces));
      cell(row, button(`Open ${collection.name}`, () => openCollection(collection.name)));
      body.append(row);
    }
  });
}

function query(parameters) {
  return new URLSearchParams(parameters).toString();
}

async function openCollection(name, offset = 0, search = name === gallery.collection ? gallery.search : "") {
  if (name !== gallery.subjectCollection) hideSubject();
  const call = ++latest.collection;
  await guarded(async () => {
    const parameters = { collection: name, offset, limit: gallery.limit, ...(search ? { search } : {}) };
    const page = await api(`/subjects?${query(parameters)}`);
    if (call !== latest.collection) return; // a later call answers instead
    if (!page.subjects.length && offset > 0) return openCollection(name, Math.max(0, offset - gallery.limit), search);
    Object.assign(gallery, { collection: name, offset, total: page.total, search });
    document.getElementById("find-subject").value = search;
    document.getElementById("subjects-title").textContent =
      search ? `Subjects of ${name} holding "${search}"` : `Subjects of ${name}`;
    const body = document.querySelector("#subjects tbody");
    body.replaceChildren();
    for (const subject of page.subjects) {
      const row = document.createElement("tr");
      cell(row, button(subject.subject_id, () => openSubject(subject.subject_id)));
      cell(row, subject.name || "");
      cell(row, String(subject.face_ids.length));
      cell(row, subject.created_at);
      body.append(row);
    }
    const last = Math.min(offset + gallery.limit, page.total);
    document.getElementById("subjects-range").textContent =
      page.total ? `${offset + 1}-${last} of ${page.total}` : "no subjects";
    document.getElementById("subjects-previous").disabled = offset === 0;
    document.getElementById("subjects-next").disabled = last >= page.total;
    document.getElementById("subjects-panel").hidden = false;
  });
}

async function thumbnail(collection, subjectId, faceId) {
  const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
  const path = `/subjects/${encodeURIComponent(subjectId)}/faces/${faceId}/thumbnail?${query({ collection })}`;
  const response = await fetch(path, { headers });
  if (response.status === 404) return null; // none kept (FV_STORE_FACE_THUMBNAILS was off)
  if (!response.ok) {
    const error = (await response.json().catch(() => ({}))).error || {};
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText, error.field);
  }
  return URL.createObjectURL(await response.blob());
}

async function openSubject(subjectId, name = gallery.collection) {
  const call = ++latest.subject;
  await guarded(async () => {
    const where = `/subjects/${encodeURIComponent(subjectId)}`;
    const collection = query({ collection: name });
    const [subject, faces] = await Promise.all([
      api(`${where}?${collection}`),
      api(`${where}/faces?${collection}`),
    ]);
    const sources = await Promise.all(faces.faces.map((face) => thumbnail(name, subject.subject_id, face.face_id)));
    if (call !== latest.subject) {
      for (const url of sources.filter(Boolean)) URL.revokeObjectURL(url);
      return; // a later call answers instead
    }
    dropThumbnails(); // the previous subject's
    thumbnails = sources.filter(Boolean);
    gallery.subject = subject.subject_id;
    gallery.subjectCollection = name;
    document.getElementById("subject-title").textContent = `${subject.subject_id} in ${name}`;
    document.getElementById("subject-facts").replaceWith(
      Object.assign(definitionList([
        ["name", subject.name || "-"],
        ["metadata", JSON.stringify(subject.metadata)],
        ["enrolled", subject.created_at],
      ]), { id: "subject-facts" }),
    );
    document.getElementById("rename-name").value = subject.name || "";
    const list = document.getElementById("subject-faces");
    list.replaceChildren();
    for (const [number, face] of faces.faces.entries()) {
      const item = document.createElement("li");
      const source = sources[number];
      if (source) {
        const image = document.createElement("img");
        image.src = source;
        image.alt = `face ${face.face_id} of ${subject.subject_id}`;
        item.append(image);
      } else {
        const none = document.createElement("span");
        none.textContent = "no thumbnail stored";
        item.append(none);
      }
      const label = document.createElement("span");
      label.textContent = `face ${face.face_id}`;
      item.append(label, button(`Delete face ${face.face_id}`, () => deleteFace(name, subject.subject_id, face.face_id)));
      list.append(item);
    }
    document.getElementById("subject-panel").hidden = false;
  });
}

async function deleteFace(collection, subjectId, faceId) {
  if (!confirm(`Delete face ${faceId} of ${subjectId} in ${collection}? The subject goes with its last face.`)) return;
  await guarded(async () => {
    const where = `/subjects/${encodeURIComponent(subjectId)}/faces/${faceId}?${query({ collection })}`;
    const change = await api(where, { method: "DELETE" });
    say(change.subject_deleted ? `Face ${faceId} deleted, and ${subjectId} with it` : `Face ${faceId} deleted`);
    if (change.subject_deleted) hideSubject();
    else await openSubject(subjectId, collection);
    if (collection === gallery.collection) await openCollection(collection, gallery.offset);
  });
}

async function deleteSubject() {
  const [subjectId, collection] = [gallery.subject, gallery.subjectCollection];
  if (!confirm(`Delete ${subjectId} and every face of it from ${collection}?`)) return;
  await guarded(async () => {
    const where = `/subjects/${encodeURIComponent(subjectId)}?${query({ collection })}`;
    const deleted = await api(where, { method: "DELETE" });
    hideSubject();
    if (collection === gallery.collection) await openCollection(collection, gallery.offset);
    say(`${subjectId} deleted, with ${deleted.deleted_faces} faces`);
  });
}

async function rename(event) {
  event.preventDefault();
  const name = document.getElementById("rename-name").value.trim();
  const [subjectId, collection] = [gallery.subject, gallery.subjectCollection];
  await guarded(async () => {
    const where = `/subjects/${encodeURIComponent(subjectId)}?${query({ collection })}`;
    await api(where, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: name || null }),
    });
    await openSubject(subjectId, collection);
    if (collection === gallery.collection) await openCollection(collection, gallery.offset);
    say(`Name saved: ${name || "none"}`);
  });
}

function galleryControls() {
  document.getElementById("subjects-previous").addEventListener("click", () =>
    openCollection(gallery.collection, Math.max(0, gallery.offset - gallery.limit)));
  document.getElementById("subjects-next").addEventListener("click", () =>
    openCollection(gallery.collection, gallery.offset + gallery.limit));
  document.getElementById("find-form").addEventListener("submit", (event) => {
    event.preventDefault();
    openCollection(gallery.collection, 0, document.getElementById("find-subject").value.trim());
  });
  document.getElementById("rename-form").addEventListener("submit", rename);
  document.getElementById("delete-subject").addEventListener("click", deleteSubject);
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

// A DET curve: FNMR (1 - TAR) against FAR, both on log scales, with the default operating point marked.
const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function detCurve(curves, point) {
  const width = 420, height = 300, left = 56, bottom = 40, top = 12, right = 12;
  const [farLow, farHigh, missLow, missHigh] = [-6, 0, -4, 0]; // log10 ranges
  const x = (far) => left + ((Math.log10(Math.max(far, 1e-6)) - farLow) / (farHigh - farLow)) * (width - left - right);
  const y = (miss) => top + ((missHigh - Math.log10(Math.max(miss, 1e-4))) / (missHigh - missLow)) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "det" });
  chart.append(svg("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, fill: "#fff", stroke: "#999" }));
  for (let decade = farLow; decade <= farHigh; decade += 1) {
    chart.append(svg("line", { x1: x(10 ** decade), x2: x(10 ** decade), y1: top, y2: height - bottom, stroke: "#eee" }));
    const label = svg("text", { x: x(10 ** decade), y: height - bottom + 16, "text-anchor": "middle", "font-size": 11 });
    label.textContent = `1e${decade}`;
    chart.append(label);
  }
  for (let decade = missLow; decade <= missHigh; decade += 1) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(10 ** decade), y2: y(10 ** decade), stroke: "#eee" }));
    const label = svg("text", { x: left - 6, y: y(10 ** decade) + 4, "text-anchor": "end", "font-size": 11 });
    label.textContent = `1e${decade}`;
    chart.append(label);
  }
  const axis = svg("text", { x: (left + width) / 2, y: height - 6, "text-anchor": "middle", "font-size": 12 });
  axis.textContent = "false-accept rate (FAR)";
  const side = svg("text", { x: 14, y: (top + height - bottom) / 2, "font-size": 12, "text-anchor": "middle",
    transform: `rotate(-90 14 ${(top + height - bottom) / 2})` });
  side.textContent = "false non-match rate (1 - TAR)";
  chart.append(axis, side);
  const colours = { cosine: "#124", snorm: "#b35c00" };
  for (const curve of curves) {
    const path = curve.points
      .filter((p) => p.far > 0)
      .map((p, n) => `${n ? "L" : "M"}${x(p.far).toFixed(1)},${y(1 - p.tar).toFixed(1)}`)
      .join(" ");
    chart.append(svg("path", { d: path, fill: "none", stroke: colours[curve.score] || "#333", "stroke-width": 2, "data-score": curve.score }));
  }
  if (point.far && point.tar !== null) {
    chart.append(svg("circle", { cx: x(point.far), cy: y(1 - point.tar), r: 5, fill: "#0a7d32" }));
  }
  chart.setAttribute(
    "aria-label",
    `DET curve of ${curves.map((c) => c.score).join(" and ")} scores; the default point: FAR ${percent(point.far)}, ` +
      `TAR ${percent(point.tar)}`,
  );
  return chart;
}

async function loadModels() {
  const target = document.getElementById("model-list");
  const call = ++latest.models;
  const cards = [];
  try {
    const ready = await api("/ready");
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
      const measured = await api(`/models/${encodeURIComponent(model.model_id)}/curves`).catch((error) => {
        const failed = document.createElement("p");
        failed.textContent = `The calibration curve could not be read: ${error.message}`;
        card.append(failed);
        return { curves: [] };
      });
      if (!measured.curves.length && measured.calibrated_on === null) {
        const none = document.createElement("p");
        none.textContent = "Not calibrated: no curve, and no false-accept rate to state.";
        card.append(none);
      }
      if (measured.curves.length) {
        const figure = document.createElement("figure");
        const caption = document.createElement("figcaption");
        caption.textContent = `Calibration (${measured.calibrated_on}): ` +
          measured.curves.map((c) => `${c.score} (${c.score === "snorm" ? "orange" : "dark blue"}, ${c.points.length} points)`).join(", ") + "; the green dot is the default point";
        figure.append(detCurve(measured.curves, model.verify), caption);
        card.append(figure);
      }
      cards.push(card);
    }
    const note = document.createElement("p");
    note.textContent = `Identify holds an FPIR of ${percent(ready.identify_fpir)} by default, on ` +
      `${ready.score_normalisation ? "cohort-normalised" : "cosine"} scores; vectors searched on ${ready.index_device}.`;
    cards.push(note);
    if (call === latest.models) target.replaceChildren(...cards); // a later call answers instead
  } catch (error) {
    say(error.message, true);
  }
}

// Wiring

function dropZones() {
  // A photo dropped beside a zone must not replace the page (and its key) with the image.
  for (const kind of ["dragover", "drop"]) document.addEventListener(kind, (event) => event.preventDefault());
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
    reset();
    shown();
    say("");
    show(location.hash.slice(1)); // what the page lists, as this key may see it
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    reset();
    shown();
    show(location.hash.slice(1));
  });
  shown();
}

document.addEventListener("DOMContentLoaded", () => {
  keyForm();
  dropZones();
  document.getElementById("verify-form").addEventListener("submit", verify);
  document.getElementById("identify-form").addEventListener("submit", identify);
  document.getElementById("enroll-form").addEventListener("submit", enroll);
  galleryControls();
  window.addEventListener("hashchange", () => show(location.hash.slice(1), true));
  show(location.hash.slice(1));
});
