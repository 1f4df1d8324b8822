// The search page: pick a query, draw its box, see the ranked images with their matched boxes.
// Plain JavaScript over the JSON API of dasr.serve.app (no build step, nothing fetched elsewhere).
"use strict";

const $ = (id) => document.getElementById(id);
const HANDLE = 8;          // px around a corner that grabs it
const QUERY_SIDE = 640;    // the query canvas's long side
const THUMB_SIDE = 320;    // pixels asked for a result thumbnail

const state = {
  info: null,
  query: null,     // {kind: "image"|"query"|"upload", id, name, file, img, width, height}
  box: null,       // [x1, y1, x2, y2] in the query image's pixels
  drag: null,      // {mode: "new"|"move"|corner index, start: [x, y], box}
  scale: 1,        // canvas pixels per image pixel
  viewing: null,   // image id shown large
};

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${src}`));
    img.src = src;
  });
}

// ------------------------------------------------------------------ the index and the lists
function describeIndex(info) {
  const c = info.config;
  const keys = ["backbone", "feature_layer", "pooling", "max_side", "tau", "nms_iou", "input_rule"];
  const config = keys.filter((k) => k in c).map((k) => `${k}=${c[k]}`).join(" ");
  return `${info.method} · ${info.images} images · ${info.regions} regions\n${config}\n${info.whitening}` +
    (info.benchmark ? `\nbenchmark: ${info.benchmark}` : "");
}

function listItem(label, thumb, onPick) {
  const li = document.createElement("li");
  const img = document.createElement("img");
  img.loading = "lazy";
  img.src = thumb;
  img.alt = "";
  li.append(img, document.createTextNode(label));
  li.addEventListener("click", () => {
    document.querySelectorAll("#picker li.selected").forEach((el) => el.classList.remove("selected"));
    li.classList.add("selected");
    onPick();
  });
  return li;
}

function fillImageList() {
  const list = $("image-list");
  const needle = $("filter").value.toLowerCase();
  list.replaceChildren();
  state.info.names.forEach((name, id) => {
    if (needle && !name.toLowerCase().includes(needle)) return;
    const li = listItem(name, `/api/images/${id}/pixels?max_side=96`, () => pickImage(id));
    li.dataset.imageId = id;
    list.append(li);
  });
}

async function fillQueryList() {
  const queries = await api("/api/queries");
  if (!queries.length) return;
  $("bench-queries").hidden = false;
  for (const q of queries) {
    const li = listItem(`${q.name} (${q.positives} relevant)`, `/api/queries/${q.query_id}/pixels?max_side=96`,
      () => pickQuery(q));
    li.dataset.queryId = q.query_id;
    $("query-list").append(li);
  }
}

// ------------------------------------------------------------------ choosing the query
async function showQuery(query, src, box) {
  query.img = await loadImage(src);
  query.width = query.img.naturalWidth;
  query.height = query.img.naturalHeight;
  state.query = query;
  state.box = box;
  const canvas = $("query-canvas");
  state.scale = QUERY_SIDE / Math.max(query.width, query.height);
  canvas.width = Math.round(query.width * state.scale);
  canvas.height = Math.round(query.height * state.scale);
  canvas.dataset.ready = "1";
  $("query-name").textContent = query.name;
  $("search-button").disabled = false;
  drawQuery();
  if (box) search();
}

async function pickImage(id) {
  const record = await api(`/api/images/${id}`);
  // The full-size pixels: the box is drawn in the image's own coordinates.
  await showQuery({kind: "image", id, name: record.name}, `/api/images/${id}/pixels`, null);
  setStatus("draw a box around the instance to search for");
}

async function pickQuery(q) {
  await showQuery({kind: "query", id: q.query_id, name: `query: ${q.name}`}, `/api/queries/${q.query_id}/pixels`,
    q.box);
}

async function pickUpload(file) {
  const url = URL.createObjectURL(file);
  try {
    await showQuery({kind: "upload", file, name: `upload: ${file.name}`}, url, null);
    setStatus("draw a box around the instance to search for");
  } catch (e) {
    setStatus(`${file.name}: the browser cannot show this file`, true);
  }
}

// ------------------------------------------------------------------ drawing the box
function drawBox(ctx, box, scale, color, width = 2, dash = []) {
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.setLineDash(dash);
  ctx.strokeRect(box[0] * scale, box[1] * scale, (box[2] - box[0]) * scale, (box[3] - box[1]) * scale);
  ctx.restore();
}

function drawQuery() {
  const canvas = $("query-canvas");
  const ctx = canvas.getContext("2d");
  ctx.drawImage(state.query.img, 0, 0, canvas.width, canvas.height);
  if (state.box) {
    drawBox(ctx, state.box, state.scale, "#ffeb3b", 3);
    ctx.fillStyle = "#ffeb3b";
    const corners = boxCorners(state.box).map(([x, y]) => [x * state.scale, y * state.scale]);
    for (const [x, y] of corners) ctx.fillRect(x - 4, y - 4, 8, 8);
    $("query-box").textContent = `box ${state.box.map((v) => Math.round(v)).join(", ")}`;
  } else {
    $("query-box").textContent = "";
  }
}

function boxCorners(b) {
  return [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]];
}

function imagePoint(event) {
  const canvas = $("query-canvas");
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width) / state.scale;
  const y = (event.clientY - rect.top) * (canvas.height / rect.height) / state.scale;
  return [Math.min(Math.max(x, 0), state.query.width), Math.min(Math.max(y, 0), state.query.height)];
}

function grab(point) {
  const b = state.box;
  if (!b) return "new";
  const reach = HANDLE / state.scale;
  const corner = boxCorners(b).findIndex(([x, y]) => Math.abs(x - point[0]) <= reach && Math.abs(y - point[1]) <= reach);
  if (corner >= 0) return corner;
  if (point[0] > b[0] && point[0] < b[2] && point[1] > b[1] && point[1] < b[3]) return "move";
  return "new";
}

function dragged(drag, point) {
  const [sx, sy] = drag.start;
  const b = drag.box;
  if (drag.mode === "new") {
    return [Math.min(sx, point[0]), Math.min(sy, point[1]), Math.max(sx, point[0]), Math.max(sy, point[1])];
  }
  if (drag.mode === "move") {
    const dx = Math.min(Math.max(point[0] - sx, -b[0]), state.query.width - b[2]);
    const dy = Math.min(Math.max(point[1] - sy, -b[1]), state.query.height - b[3]);
    return [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy];
  }
  // A corner: the opposite corner stays.
  const opposite = boxCorners(b)[(drag.mode + 2) % 4];
  return [Math.min(opposite[0], point[0]), Math.min(opposite[1], point[1]),
          Math.max(opposite[0], point[0]), Math.max(opposite[1], point[1])];
}

function setupDrawing() {
  const canvas = $("query-canvas");
  canvas.addEventListener("mousedown", (event) => {
    if (!state.query) return;
    const point = imagePoint(event);
    state.drag = {mode: grab(point), start: point, box: state.box};
    event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    if (!state.drag) return;
    state.box = dragged(state.drag, imagePoint(event));
    drawQuery();
  });
  window.addEventListener("mouseup", (event) => {
    if (!state.drag) return;
    const moved = state.drag;
    state.drag = null;
    const box = dragged(moved, imagePoint(event));
    if (box[2] - box[0] < 1 || box[3] - box[1] < 1) {  // a click, not a drag
      state.box = moved.box;
      drawQuery();
      return;
    }
    state.box = box;
    drawQuery();
    search();
  });
}

// ------------------------------------------------------------------ searching
async function search() {
  if (!state.query) return;
  const top = Number($("top").value);
  const box = state.box;
  setStatus("searching…");
  $("results").dataset.state = "busy";
  let result;
  try {
    if (state.query.kind === "upload") {
      const form = new FormData();
      form.append("upload", state.query.file);
      if (box) form.append("box", box.join(","));
      form.append("top", String(top));
      result = await api("/api/search", {method: "POST", body: form});
    } else {
      const body = {top, box};
      body[state.query.kind === "image" ? "image_id" : "query_id"] = state.query.id;
      result = await api("/api/search", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(body)});
    }
  } catch (e) {
    setStatus(e.message, true);
    $("results").dataset.state = "error";
    return;
  }
  setStatus(`${result.hits.length} results in ${(result.seconds * 1000).toFixed(0)} ms`);
  showAp(result.ap);
  await showResults(result.hits);
  $("results").dataset.state = "done";
}

function showAp(ap) {
  const el = $("ap");
  if (!ap) { el.hidden = true; return; }
  const ks = Object.keys(ap).filter((k) => k.endsWith("/truncated")).map((k) => `${k.split("/")[0]} ${ap[k].toFixed(3)}`);
  el.textContent = `AP ${ap.ap.toFixed(3)} (whole list) · ${ks.join(" · ")}`;
  el.hidden = false;
}

async function showResults(hits) {
  const cards = await Promise.all(hits.map(resultCard));
  $("results").replaceChildren(...cards);
}

async function resultCard(hit) {
  const card = document.createElement("div");
  card.className = "result" + (hit.relevant === true ? " relevant" : hit.relevant === false ? " irrelevant" : "");
  card.dataset.imageId = hit.image_id;
  card.dataset.score = hit.score;
  card.dataset.box = hit.box ? hit.box.join(",") : "";
  const canvas = document.createElement("canvas");
  let record, img;
  try {
    record = await api(`/api/images/${hit.image_id}`);
    img = await loadImage(`/api/images/${hit.image_id}/pixels?max_side=${THUMB_SIDE}`);
  } catch (e) {  // an image that cannot be shown (moved, or outside the collection): say so
    const missing = document.createElement("div");
    missing.textContent = `#${hit.rank} · ${hit.score.toFixed(3)} · ${hit.name}: ${e.message}`;
    card.append(missing);
    return card;
  }
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const scale = img.naturalWidth / record.width;
  if (hit.truth) drawBox(ctx, hit.truth, scale, "#00e5ff", 2, [5, 4]);
  if (hit.box) drawBox(ctx, hit.box, scale, "#ffeb3b", 3);
  canvas.dataset.boxDrawn = hit.box ? "1" : "0";
  canvas.title = "open large with all its regions";
  canvas.addEventListener("click", () => openViewer(hit));
  const meta = document.createElement("div");
  meta.className = "meta";
  const mark = hit.relevant === true ? " ✓" : hit.relevant === false ? " ✗" : "";
  meta.innerHTML = `<span>#${hit.rank} · ${hit.score.toFixed(3)}${mark}</span>`;
  const use = document.createElement("button");
  use.textContent = "use as query";
  use.addEventListener("click", () => pickImage(hit.image_id));
  meta.append(use);
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = hit.name;
  card.append(canvas, meta, name);
  return card;
}

// ------------------------------------------------------------------ one image, large
async function openViewer(hit) {
  const record = await api(`/api/images/${hit.image_id}`);
  const img = await loadImage(`/api/images/${hit.image_id}/pixels`);
  const canvas = $("viewer-canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  for (const box of record.regions) drawBox(ctx, box, 1, "rgba(255,255,255,.85)", 1);
  if (hit.truth) drawBox(ctx, hit.truth, 1, "#00e5ff", 2, [5, 4]);
  if (hit.box) drawBox(ctx, hit.box, 1, "#ffeb3b", 3);
  $("viewer-title").textContent = `${record.name} (${record.width}×${record.height})`;
  $("viewer-legend").textContent = `${record.regions.length} stored regions (white); matched region ` +
    `(yellow, score ${hit.score.toFixed(3)})` + (hit.truth ? "; ground truth (dashed cyan)" : "");
  state.viewing = hit.image_id;
  $("viewer").hidden = false;
}

function setupViewer() {
  $("viewer-close").addEventListener("click", () => { $("viewer").hidden = true; });
  $("viewer").addEventListener("click", (event) => { if (event.target === $("viewer")) $("viewer").hidden = true; });
  $("viewer-query").addEventListener("click", () => { $("viewer").hidden = true; pickImage(state.viewing); });
}

// ------------------------------------------------------------------ start
async function start() {
  setupDrawing();
  setupViewer();
  $("filter").addEventListener("input", fillImageList);
  $("upload").addEventListener("change", (event) => { if (event.target.files[0]) pickUpload(event.target.files[0]); });
  $("search-button").addEventListener("click", search);
  $("top").addEventListener("change", () => { if (state.box) search(); });
  try {
    state.info = await api("/api/info");
  } catch (e) {
    $("index-info").textContent = e.message;
    return;
  }
  $("index-info").textContent = describeIndex(state.info);
  fillImageList();
  await fillQueryList();
  document.body.dataset.ready = "1";
}

start();
