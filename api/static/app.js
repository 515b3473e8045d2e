/* fer-batch's web page: submit a job, follow its progress, browse its results.
 *
 * Plain JavaScript, no build step and no library: it only talks to the API that serves it
 * (POST /jobs, GET /jobs/<id>, DELETE /jobs/<id>, the CSV downloads). Thumbnails are the submitted
 * images, loaded by the browser from their own URLs. With API keys on, the first 401 asks for a
 * key, kept in localStorage and sent as "Authorization: Bearer <key>" on every request.
 */
"use strict";

(() => {
  const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
  const POLL_MS = 1000;
  const RECENT_MAX = 20;
  const KEY_STORE = "fer-batch.apiKey";
  const RECENT_STORE = "fer-batch.recentJobs";
  const LANDMARKS_STORE = "fer-batch.showLandmarks";
  const FILTERS = [["min_face_size", "min-face-size"], ["min_score", "min-score"], ["max_faces", "max-faces"]];

  const $ = (id) => document.getElementById(id);

  // -- small helpers ----------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "style") Object.assign(node.style, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const percent = (p) => `${(p * 100).toFixed(1)} %`;
  const isHttpUrl = (url) => /^https?:\/\//i.test(url);

  function storage(name, fallback) {
    try {
      const raw = localStorage.getItem(name);
      return raw === null ? fallback : JSON.parse(raw);
    } catch {
      return fallback;
    }
  }

  function store(name, value) {
    try {
      if (value === null) localStorage.removeItem(name);
      else localStorage.setItem(name, JSON.stringify(value));
    } catch {
      /* private mode or full: the page still works for this visit */
    }
  }

  // -- talking to the API -----------------------------------------------------------------------

  class ApiProblem extends Error {
    constructor(status, code, message, extra = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.extra = extra;
    }
    toString() {
      return `${this.message} (${this.code})`;
    }
  }

  async function problemOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      /* not JSON: a proxy's page, say */
    }
    const error = body && body.error;
    if (error && error.code) {
      const { code, message, ...extra } = error;
      return new ApiProblem(response.status, code, message || response.statusText, extra);
    }
    return new ApiProblem(response.status, `http_${response.status}`, `the server answered HTTP ${response.status}`);
  }

  let keyWaiters = [];

  /** Show the key form with the API's words; resolves once a key has been entered. */
  function askForKey(problem) {
    $("key-message").textContent = problem ? problem.toString() : "Enter an API key for this API.";
    $("key-panel").hidden = false;
    $("key-input").value = "";
    $("key-input").focus();
    return new Promise((resolve) => keyWaiters.push(resolve));
  }

  function setKey(key) {
    store(KEY_STORE, key || null);
    showKeyState();
  }

  function showKeyState() {
    $("key-state").hidden = !storage(KEY_STORE, null);
  }

  /** fetch() on the API with the stored key; a 401 asks for a key and tries again. */
  async function api(path, options = {}) {
    for (;;) {
      const headers = new Headers(options.headers || {});
      const key = storage(KEY_STORE, null);
      if (key) headers.set("Authorization", `Bearer ${key}`);
      let response;
      try {
        response = await fetch(path, { ...options, headers, cache: "no-store" });
      } catch (error) {
        throw new ApiProblem(0, "network_error", `cannot reach the API (${error.message})`);
      }
      if (response.status === 401) {
        await askForKey(await problemOf(response));
        continue;
      }
      if (!response.ok) throw await problemOf(response);
      return response;
    }
  }

  const apiJson = async (path, options) => (await api(path, options)).json();

  // -- recent jobs (this browser only) ----------------------------------------------------------

  function rememberJob(job) {
    const recent = storage(RECENT_STORE, []).filter((entry) => entry.id !== job.job_id);
    recent.unshift({ id: job.job_id, total: job.total, status: job.status, created_at: job.created_at,
                     faces: job.faces });
    store(RECENT_STORE, recent.slice(0, RECENT_MAX));
    renderRecent();
  }

  function markRecent(id, status) {
    const recent = storage(RECENT_STORE, []);
    const entry = recent.find((item) => item.id === id);
    if (entry && entry.status !== status) {
      entry.status = status;
      store(RECENT_STORE, recent);
      renderRecent();
    }
  }

  function renderRecent() {
    const recent = storage(RECENT_STORE, []);
    const list = $("recent");
    list.replaceChildren(...recent.map((entry) => {
      const when = entry.created_at ? new Date(entry.created_at).toLocaleString() : "";
      const link = el("a", { href: `/?job=${encodeURIComponent(entry.id)}`, "data-job": entry.id,
                             "aria-current": entry.id === currentJobId ? "page" : null },
                      el("code", { text: entry.id }));
      return el("li", {}, link,
                el("span", { class: "recentmeta" },
                   `${entry.total} URL${entry.total === 1 ? "" : "s"} · ${entry.status} · ${when}`));
    }));
    $("recent-empty").hidden = recent.length > 0;
    $("recent-clear").hidden = recent.length === 0;
  }

  // -- the job being shown ----------------------------------------------------------------------

  let currentJobId = null;
  let pollTimer = null;
  let generation = 0; // bumps when another job is opened: stale answers are dropped
  let lastAnnounce = { status: null, at: 0 };
  const view = { offset: 0, limit: 50, total: 0, rows: [] };

  function stopPolling() {
    if (pollTimer !== null) clearTimeout(pollTimer);
    pollTimer = null;
  }

  const finished = (status) => status === "done" || status === "cancelled";

  function rate(job) {
    const end = Date.parse(job.finished_at || job.updated_at);
    const start = Date.parse(job.created_at);
    const seconds = (end - start) / 1000;
    if (!job.processed || !(seconds > 0.05)) return "–";
    const value = job.processed / seconds;
    return value >= 100 ? value.toFixed(0) : value.toFixed(1);
  }

  function showProgress(job) {
    const status = job.status;
    $("job-status").textContent = status;
    $("job-status").dataset.status = status;
    $("job-faces").textContent = job.faces === "whole" ? "whole images" : "faces detected";
    $("job-created").textContent = `submitted ${new Date(job.created_at).toLocaleString()}`;
    const bar = $("progress");
    bar.setAttribute("aria-valuemax", job.total);
    bar.setAttribute("aria-valuenow", job.processed);
    bar.setAttribute("aria-valuetext", `${job.processed} of ${job.total} processed, ${status}`);
    bar.dataset.status = status;
    // A done job's bar is full, drawn at once: the width's transition only eases a running job's
    // steps, and a finished job's bar must not be seen still growing (nor short of full).
    const fill = $("progress-fill");
    fill.classList.toggle("settled", finished(status));
    const share = status === "done" ? 100 : job.total ? (100 * job.processed) / job.total : 0;
    fill.style.width = `${share}%`;
    $("stat-processed").textContent = job.processed;
    $("stat-total").textContent = job.total;
    $("stat-ok").textContent = job.succeeded;
    $("stat-failed").textContent = job.failed;
    $("stat-rate").textContent = rate(job);
    $("cancel-button").hidden = finished(status);
    // Screen readers hear status changes and, while running, at most one update every 5 s.
    const now = Date.now();
    if (status !== lastAnnounce.status || now - lastAnnounce.at > 5000) {
      $("progress-live").textContent = `Job ${status}: ${job.processed} of ${job.total} processed, `
        + `${job.succeeded} ok, ${job.failed} failed.`;
      lastAnnounce = { status, at: now };
    }
    view.total = job.total;
    const base = `/jobs/${encodeURIComponent(job.job_id)}`;
    $("dl-results").href = `${base}/results.csv`;
    $("dl-faces").href = `${base}/faces.csv`;
  }

  async function openJob(id, { push = false, job = null } = {}) {
    stopPolling();
    generation += 1;
    const mine = generation;
    currentJobId = id;
    if (push) history.pushState({ job: id }, "", `/?job=${encodeURIComponent(id)}`);
    $("job-panel").hidden = false;
    $("job-id").textContent = id;
    $("job-link").href = `/?job=${encodeURIComponent(id)}`;
    $("job-error").textContent = "";
    $("results-error").textContent = "";
    $("results").replaceChildren();
    $("results-panel").hidden = true;
    $("filter").value = "all";
    view.offset = 0;
    lastAnnounce = { status: null, at: 0 };
    renderRecent();
    try {
      job = job || await apiJson(`/jobs/${encodeURIComponent(id)}?limit=1`);
    } catch (problem) {
      if (mine !== generation) return;
      $("job-error").textContent = problem.toString();
      $("job-status").textContent = problem.code === "job_not_found" ? "not found" : "error";
      $("cancel-button").hidden = true;
      if (problem.code === "job_not_found") markRecent(id, "not found");
      return;
    }
    if (mine !== generation) return;
    rememberJob(job);
    showProgress(job);
    await loadResults();
    if (!finished(job.status)) pollTimer = setTimeout(() => poll(mine), POLL_MS);
  }

  async function poll(mine) {
    if (mine !== generation) return;
    let delay = POLL_MS;
    try {
      const job = await apiJson(`/jobs/${encodeURIComponent(currentJobId)}?limit=1`);
      if (mine !== generation) return;
      $("job-error").textContent = "";
      showProgress(job);
      markRecent(job.job_id, job.status);
      if (finished(job.status)) {
        await loadResults();
        return;
      }
    } catch (problem) {
      if (mine !== generation) return;
      $("job-error").textContent = problem.toString();
      if (problem.code === "job_not_found") return;
      if (problem.extra && problem.extra.retry_after) delay = 1000 * problem.extra.retry_after;
      else delay = 3 * POLL_MS;
    }
    pollTimer = setTimeout(() => poll(mine), delay);
  }

  async function cancelJob() {
    const mine = generation;
    const button = $("cancel-button");
    button.disabled = true;
    try {
      const job = await apiJson(`/jobs/${encodeURIComponent(currentJobId)}`, { method: "DELETE" });
      if (mine !== generation) return;
      showProgress(job);
      markRecent(job.job_id, job.status);
      if (finished(job.status)) {
        stopPolling();
        await loadResults();
      }
    } catch (problem) {
      $("job-error").textContent = problem.toString();
    } finally {
      button.disabled = false;
    }
  }

  // -- results ------------------------------------------------------------------------------------

  async function loadResults() {
    const mine = generation;
    const id = currentJobId;
    try {
      const page = await apiJson(`/jobs/${encodeURIComponent(id)}?offset=${view.offset}&limit=${view.limit}`);
      if (mine !== generation) return;
      view.total = page.total;
      view.rows = page.results;
      $("results-error").textContent = "";
      renderResults(page);
    } catch (problem) {
      if (mine !== generation) return;
      $("results-error").textContent = problem.toString();
    }
    $("results-panel").hidden = false;
  }

  function bars(emotions, label) {
    const list = el("ul", { class: "bars", "aria-label": label });
    for (const name of EMOTIONS) {
      const value = emotions[name] ?? 0;
      list.append(el("li", { "data-emotion": name, "data-value": value },
        el("span", { class: "name", text: name }),
        el("span", { class: "track", "aria-hidden": "true" },
           el("span", { class: `fill e-${name}`, style: { width: `${(100 * value).toFixed(2)}%` } })),
        el("span", { class: "value", text: percent(value) })));
    }
    return list;
  }

  function placeBoxes(img, frame, faces) {
    const width = img.naturalWidth;
    const height = img.naturalHeight;
    if (!width || !height) return;
    frame.querySelectorAll(".box, .landmark").forEach((mark) => mark.remove());
    faces.forEach((face, number) => {
      const [x, y, w, h] = face.box;
      frame.append(el("span", {
        class: "box", "data-face": number, "aria-hidden": "true",
        style: { left: `${(100 * x) / width}%`, top: `${(100 * y) / height}%`,
                 width: `${(100 * w) / width}%`, height: `${(100 * h) / height}%` },
      }, el("span", { class: "boxlabel", text: number + 1 })));
      // Landmarks (hidden unless "Show landmarks" is on): in the photo's pixels, like the box.
      for (const [name, point] of Object.entries(face.landmarks || {})) {
        frame.append(el("span", {
          class: "landmark", "data-face": number, "data-point": name, "aria-hidden": "true",
          style: { left: `${(100 * point[0]) / width}%`, top: `${(100 * point[1]) / height}%` },
        }));
      }
    });
    frame.classList.toggle("many", faces.length > 6);
    frame.dataset.boxes = String(faces.length);
  }

  function thumbnail(row) {
    const faces = (row.faces || []).filter((face) => Array.isArray(face.box));
    const count = row.face_count;
    const described = row.status === "ok"
      ? `top emotion ${row.top}${count ? `, ${count} face${count === 1 ? "" : "s"}` : ""}`
      : "no face found";
    const img = el("img", { src: row.url, alt: `Image ${row.index}: ${described}`, loading: "lazy",
                            decoding: "async", referrerpolicy: "no-referrer" });
    const frame = el("span", { class: "frame" }, img);
    const link = el("a", { class: "thumb", href: row.url, target: "_blank", rel: "noopener noreferrer",
                           title: "Open the image" }, frame);
    if (faces.length) {
      const place = () => placeBoxes(img, frame, faces);
      img.addEventListener("load", place);
      if (img.complete) place();
    }
    img.addEventListener("error", () => frame.replaceChildren(el("span", { class: "noimg", text: "no preview" })));
    return link;
  }

  function quality(face) {
    // A face's details in one line: size, brightness and sharpness (0-100), roll in degrees.
    if (!face.quality) return null;
    const roll = face.pose ? ` · roll ${Math.round(face.pose.roll)}°` : "";
    return el("p", { class: "quality",
                     text: `${face.size} px · brightness ${Math.round(face.quality.brightness)} · ` +
                           `sharpness ${Math.round(face.quality.sharpness)}${roll}` });
  }

  function faceList(row) {
    const faces = row.faces || [];
    if (faces.length <= 1) return null;
    const list = el("ol", { class: "faces" });
    faces.forEach((face, number) => {
      const item = el("li", { "data-face": number },
        el("p", { class: "facehead" }, `Face ${number + 1}: `, el("strong", { class: "top", text: face.top }),
           ` ${percent(face.emotions[face.top])}`),
        quality(face),
        bars(face.emotions, `Face ${number + 1} of image ${row.index}: emotion probabilities`));
      const highlight = (on) => {
        const box = document.querySelector(`#results li[data-index="${row.index}"] .box[data-face="${number}"]`);
        if (box) box.classList.toggle("hl", on);
      };
      item.addEventListener("mouseenter", () => highlight(true));
      item.addEventListener("mouseleave", () => highlight(false));
      list.append(item);
    });
    return el("details", { class: "facesbox", open: faces.length <= 4 },
              el("summary", { text: `All ${faces.length} faces, largest first` }), list);
  }

  function card(row) {
    const error = row.status === "error" ? row.error || {} : null;
    const group = (row.faces || []).length > 4;
    const item = el("li", { class: `card is-${row.status}${group ? " group" : ""}`, "data-index": row.index, "data-status": row.status,
                            "data-top": row.top || null, "data-error": error ? error.code : null });
    const showImage = isHttpUrl(row.url) && (row.status === "ok" || (error && error.code === "no_face"));
    item.append(showImage ? thumbnail(row) : el("span", { class: "thumb empty", "aria-hidden": "true" }));
    const info = el("div", { class: "info" },
      el("p", { class: "url" }, el("span", { class: "index", text: `#${row.index}` }), " ",
         isHttpUrl(row.url) ? el("a", { href: row.url, target: "_blank", rel: "noopener noreferrer", text: row.url })
                            : el("span", { text: row.url })));
    if (row.status === "ok") {
      const faces = row.faces ? ` · ${row.face_count} face${row.face_count === 1 ? "" : "s"}` : "";
      info.append(el("p", { class: "headline" }, el("strong", { class: "top", text: row.top }),
                     ` ${percent(row.emotions[row.top])}${faces}${row.faces && row.face_count > 1 ? " (largest)" : ""}`),
                  bars(row.emotions, `Image ${row.index}: emotion probabilities`));
      if (row.faces && row.faces.length === 1 && row.faces[0].quality) info.insertBefore(quality(row.faces[0]),
                                                                                        info.querySelector(".bars"));
      const more = faceList(row);
      if (more) info.append(more);
    } else if (error) {
      info.append(el("p", { class: "headline err" }, el("code", { class: "code", text: error.code }),
                     error.http_status ? ` HTTP ${error.http_status}` : ""),
                  el("p", { class: "message", text: error.message }));
    } else {
      info.append(el("p", { class: "headline muted", text: row.status }));
    }
    item.append(info);
    return item;
  }

  function renderResults(page) {
    const list = $("results");
    list.replaceChildren(...page.results.map(card));
    list.dataset.jobStatus = page.status;
    list.dataset.offset = String(view.offset);
    const first = page.results.length ? view.offset + 1 : 0;
    $("page-info").textContent = `rows ${first}–${view.offset + page.results.length} of ${page.total}`;
    $("page-prev").disabled = view.offset === 0;
    $("page-next").disabled = !page.next;
    fillFilter(page.results);
    applyFilter();
  }

  function fillFilter(rows) {
    const select = $("filter");
    const chosen = select.value;
    const codes = [...new Set(rows.filter((row) => row.status === "error").map((row) => row.error.code))].sort();
    const options = [["all", "all rows"], ["ok", "ok rows"], ["error", "errors"]];
    for (const name of EMOTIONS) options.push([`top:${name}`, `top emotion: ${name}`]);
    for (const code of codes) options.push([`code:${code}`, `error: ${code}`]);
    if (!options.some(([value]) => value === chosen)) options.push([chosen, chosen.replace(":", ": ")]);
    select.replaceChildren(...options.map(([value, text]) => el("option", { value, text })));
    select.value = chosen;
  }

  function matches(item, filter) {
    const { status, top, error } = item.dataset;
    if (filter === "all") return true;
    if (filter === "ok" || filter === "error") return status === filter;
    if (filter.startsWith("top:")) return status === "ok" && top === filter.slice(4);
    if (filter.startsWith("code:")) return status === "error" && error === filter.slice(5);
    return true;
  }

  function applyFilter() {
    const filter = $("filter").value;
    let shown = 0;
    const items = [...$("results").children];
    for (const item of items) {
      item.hidden = !matches(item, filter);
      if (!item.hidden) shown += 1;
    }
    $("filter-info").textContent = filter === "all" ? ""
      : `${shown} of ${items.length} rows on this page match.`;
  }

  // -- downloads: a plain link, or fetch + Blob when a key must be sent --------------------------

  async function download(event) {
    if (!storage(KEY_STORE, null)) return; // no key: the link downloads by itself
    event.preventDefault();
    const link = event.currentTarget;
    try {
      const response = await api(link.getAttribute("href"));
      const blob = await response.blob();
      const disposition = response.headers.get("Content-Disposition") || "";
      const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || link.textContent.trim();
      const url = URL.createObjectURL(blob);
      const anchor = el("a", { href: url, download: name, hidden: true });
      document.body.append(anchor);
      anchor.click();
      anchor.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (problem) {
      $("results-error").textContent = problem.toString();
    }
  }

  // -- submitting ---------------------------------------------------------------------------------

  let chosenFile = null;

  function chooseFile(file) {
    chosenFile = file || null;
    $("file-chosen").hidden = !chosenFile;
    $("file-name").textContent = chosenFile ? `${chosenFile.name} (${chosenFile.size.toLocaleString()} bytes)` : "";
    if (!chosenFile) $("csv-file").value = "";
  }

  function faceFilters() {
    // The filters filled in: numbers as numbers; anything else as typed, for the API to refuse in its words.
    const filters = {};
    for (const [name, id] of FILTERS) {
      const text = $(id).value.trim() || ($(id).validity.badInput ? "not a number" : "");
      if (text) filters[name] = Number.isFinite(Number(text)) ? Number(text) : text;
    }
    return filters;
  }

  function showLandmarks(on) {
    $("show-landmarks").checked = on;
    $("results").classList.toggle("landmarks", on);
    store(LANDMARKS_STORE, on ? true : null);
  }

  async function submitJob(event) {
    event.preventDefault();
    const error = $("submit-error");
    const button = $("submit-button");
    error.textContent = "";
    const faces = $("faces").value;
    const filters = faceFilters();
    let request;
    if (chosenFile) {
      const form = new FormData();
      form.append("file", chosenFile, chosenFile.name);
      const query = new URLSearchParams({ faces, ...filters });
      request = { path: `/jobs?${query}`, options: { method: "POST", body: form } };
    } else {
      const urls = $("urls").value.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
      request = { path: "/jobs", options: { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify({ urls, faces, ...filters }) } };
    }
    button.disabled = true;
    try {
      const job = await apiJson(request.path, request.options);
      rememberJob(job);
      await openJob(job.job_id, { push: true, job });
      $("job-heading").scrollIntoView({ block: "start" });
    } catch (problem) {
      error.textContent = problem.toString();
    } finally {
      button.disabled = false;
    }
  }

  // -- wiring -------------------------------------------------------------------------------------

  function openFromLocation() {
    const id = new URLSearchParams(location.search).get("job");
    if (id) {
      openJob(id.trim()).then(() => {
        if (currentJobId === id.trim()) $("job-heading").scrollIntoView({ block: "start" });
      });
    } else {
      stopPolling();
      generation += 1;
      currentJobId = null;
      $("job-panel").hidden = true;
      $("results-panel").hidden = true;
      renderRecent();
    }
  }

  function init() {
    $("submit-form").addEventListener("submit", submitJob);
    $("csv-file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
    $("file-clear").addEventListener("click", () => chooseFile(null));
    const drop = $("drop");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files.length) chooseFile(event.dataTransfer.files[0]);
    });

    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      setKey(key);
      $("key-panel").hidden = true;
      const waiting = keyWaiters;
      keyWaiters = [];
      waiting.forEach((resolve) => resolve());
    });
    $("key-change").addEventListener("click", () => askForKey(null));
    $("key-forget").addEventListener("click", () => setKey(null));

    $("open-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("open-id").value.trim();
      if (id) openJob(id, { push: true });
    });
    $("recent").addEventListener("click", (event) => {
      const link = event.target.closest("a[data-job]");
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey || event.button !== 0) return;
      event.preventDefault();
      openJob(link.dataset.job, { push: true });
      $("job-heading").scrollIntoView({ block: "start" });
    });
    $("recent-clear").addEventListener("click", () => {
      store(RECENT_STORE, null);
      renderRecent();
    });

    $("cancel-button").addEventListener("click", cancelJob);
    $("filter").addEventListener("change", applyFilter);
    $("show-landmarks").addEventListener("change", (event) => showLandmarks(event.target.checked));
    showLandmarks(Boolean(storage(LANDMARKS_STORE, false)));
    $("page-size").addEventListener("change", () => {
      view.limit = Number($("page-size").value);
      view.offset = 0;
      loadResults();
    });
    $("page-prev").addEventListener("click", () => {
      view.offset = Math.max(0, view.offset - view.limit);
      loadResults();
    });
    $("page-next").addEventListener("click", () => {
      if (view.offset + view.limit < view.total) view.offset += view.limit;
      loadResults();
    });
    $("dl-results").addEventListener("click", download);
    $("dl-faces").addEventListener("click", download);
    window.addEventListener("popstate", openFromLocation);

    view.limit = Number($("page-size").value);
    showKeyState();
    openFromLocation();
  }

  init();
})();
