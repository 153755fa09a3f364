// nethook dashboard: the live event table, fed by /api/events/stream (server-sent events).
// Rows built here mirror templates/_rows.html; text goes in with textContent, never HTML.
(function () {
  "use strict";

  const MAX_ROWS = 500; // a dashboard left open for days must not grow without end
  let stream = null;
  let section = null;

  function td(text, cls) {
    const cell = document.createElement("td");
    if (cls) cell.className = cls;
    cell.textContent = text;
    return cell;
  }

  function buildRow(r) {
    const tr = document.createElement("tr");
    tr.id = "ev-" + r.id;
    tr.dataset.seq = String(r.seq);
    tr.dataset.href = "/ui/events/" + encodeURIComponent(r.id);
    const time = td("", "time");
    const link = document.createElement("a");
    link.href = tr.dataset.href;
    link.textContent = r.time;
    time.appendChild(link);
    const status = td("");
    const badge = document.createElement("span");
    badge.className = "badge " + r.status;
    badge.textContent = r.status;
    status.appendChild(badge);
    if (r.replay_of) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "replay";
      status.append(" ", tag);
    }
    tr.append(time, td(r.source), td(r.type, "type"), td(r.device), td(r.summary, "summary"), status);
    return tr;
  }

  function flash(tr) {
    tr.classList.add("fresh");
    setTimeout(function () { tr.classList.remove("fresh"); }, 4000);
  }

  // Insert by seq (newest first): catch-up and live messages may interleave.
  function insert(tbody, tr, seq) {
    const empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    let before = null;
    for (const other of tbody.querySelectorAll("tr[data-seq]")) {
      if (Number(other.dataset.seq) < seq) { before = other; break; }
    }
    tbody.insertBefore(tr, before || tbody.querySelector("tr.more"));
    trim(tbody);
  }

  function trim(tbody) {
    const rows = tbody.querySelectorAll("tr[data-seq]");
    if (rows.length <= MAX_ROWS) return;
    for (let i = MAX_ROWS; i < rows.length; i++) rows[i].remove();
    // The "older" cursor now points past the dropped rows: offer a full page instead.
    const last = rows[MAX_ROWS - 1].dataset.seq;
    const filters = section.dataset.filters;
    const more = tbody.querySelector("tr.more") || document.createElement("tr");
    more.className = "more";
    more.replaceChildren(td(""));
    const link = document.createElement("a");
    link.href = "/?" + (filters ? filters + "&" : "") + "before=" + last;
    link.textContent = "Older events";
    more.firstChild.colSpan = 6;
    more.firstChild.appendChild(link);
    tbody.appendChild(more);
  }

  // Counters follow the stream: one refresh shortly after a burst, not one per event.
  let statsTimer = null;
  function refreshStats() {
    if (statsTimer || !window.htmx || !document.getElementById("stats")) return;
    statsTimer = setTimeout(function () {
      statsTimer = null;
      window.htmx.trigger("#stats", "nethook-refresh");
    }, 1500);
  }

  // Between a filter swap and the reconnect, the old (differently filtered) stream may
  // still deliver: only the current stream writes into the current list.
  function stale(message) {
    return message.target !== stream || document.getElementById("events") !== section;
  }

  function onNew(message) {
    if (stale(message)) return;
    const r = JSON.parse(message.data);
    const tbody = document.getElementById("rows");
    if (!tbody) return;
    const existing = document.getElementById("ev-" + r.id);
    const tr = buildRow(r);
    if (existing) existing.replaceWith(tr);
    else insert(tbody, tr, r.seq);
    flash(tr);
    refreshStats();
  }

  function onUpdate(message) {
    if (stale(message)) return;
    const r = JSON.parse(message.data);
    const tbody = document.getElementById("rows");
    if (!tbody) return;
    const wanted = section.dataset.status;
    const existing = document.getElementById("ev-" + r.id);
    refreshStats();
    if (wanted && r.status !== wanted) {
      if (existing) existing.remove(); // it left the status this view shows
      return;
    }
    const tr = buildRow(r);
    if (existing) existing.replaceWith(tr);
    else if (wanted) insert(tbody, tr, r.seq); // it entered the status this view shows
    else return;
    flash(tr);
  }

  function setState(text, cls) {
    const live = document.getElementById("live");
    if (!live) return;
    live.className = "live " + cls;
    live.querySelector(".live-text").textContent = text;
  }

  function connect() {
    section = document.getElementById("events");
    if (stream) { stream.close(); stream = null; }
    if (!section || !section.dataset.stream || !window.EventSource) return;
    stream = new EventSource(section.dataset.stream);
    stream.addEventListener("open", function () { setState("live", "on"); });
    stream.addEventListener("error", function () { setState("reconnecting…", "off"); });
    stream.addEventListener("new", onNew);
    stream.addEventListener("update", onUpdate);
  }

  document.addEventListener("DOMContentLoaded", connect);
  // The filter form swaps #events: reconnect with the new filters.
  document.addEventListener("htmx:afterSettle", function () {
    if (document.getElementById("events") !== section) connect();
  });
  // A 401 on a fragment (session expired): htmx follows HX-Redirect to the login page.

  // Whole rows are links; real links, buttons and checkboxes keep their own behaviour.
  document.addEventListener("click", function (ev) {
    const tr = ev.target.closest("tr[data-href]");
    if (!tr || ev.target.closest("a, button, input, label")) return;
    if (window.getSelection && String(window.getSelection())) return; // selecting text
    window.location.href = tr.dataset.href;
  });

  document.addEventListener("change", function (ev) {
    if (!ev.target.matches("[data-select-all]")) return;
    for (const box of document.querySelectorAll("input[name=ids]")) box.checked = ev.target.checked;
  });
})();
