// LinkGuard console: polls the JSON API and re-renders; actions are POSTed
// to the server, which signs them (no key ever reaches this page).
"use strict";
(function () {
  const $ = (s, r) => (r || document).querySelector(s);
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e[k] = v;
    }
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const fmtTime = (s) => (s ? new Date(s).toISOString().slice(0, 16).replace("T", " ") + "Z" : "—");
  const kw = (w) => (w / 1000).toFixed(1) + " kW";

  async function act(body) {
    const status = $("#action-status");
    status.textContent = "sending " + body.action + "…";
    try {
      const r = await fetch("/api/action", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-LinkGuard-Console": "1" },
        body: JSON.stringify(body),
      });
      const j = await r.json();
      status.textContent = r.ok ? body.action + " sent (" + j.id + ")" : "refused: " + j.error;
      status.className = r.ok ? "ok" : "bad";
    } catch (e) {
      status.textContent = "failed: " + e;
    }
    refresh();
  }

  function renderFleet(devs) {
    const tb = $("#fleet tbody");
    tb.replaceChildren();
    if (!devs.length) tb.append(el("tr", { class: "empty" }, el("td", { colSpan: 10 }, "No device has reported yet.")));
    for (const d of devs) {
      const f = d.filter;
      const tr = el("tr", { "data-device": d.id, "data-online": String(d.online), "data-serial": String(d.policy_serial) });
      if (f) tr.setAttribute("data-denied", String(f.denied));
      const appr = f && f.approvals ? f.approvals.map((a) => a.id + ": " + a.packets + " pkts").join(", ") : "";
      tr.append(
        el("td", {}, d.id), el("td", {}, d.site || ""), el("td", {}, d.kind || ""),
        el("td", { class: "state " + (d.online ? "online" : "offline") }, d.online ? "online" : "offline"),
        el("td", { class: "serial" }, d.policy_serial || "none"),
        el("td", {}, fmtTime(d.policy_expires)),
        el("td", { class: "denied" }, f ? f.denied : ""), el("td", {}, f ? f.passed : ""),
        el("td", {}, appr),
        el("td", {}, el("button", { type: "button", "data-rebirth": d.id, onclick: () => act({ action: "rebirth", target: d.id }) }, "rebirth")),
      );
      tb.append(tr);
    }
  }

  function renderPolicy(s) {
    const p = s.policy;
    $("#policy-serial").textContent = s.has_policy ? "serial " + p.serial + ", expires " + fmtTime(p.expires) : "none on the broker";
    const tb = $("#approvals tbody");
    tb.replaceChildren();
    for (const a of p.approvals || []) {
      const btn = a.revoked
        ? el("button", { type: "button", "data-approve": a.id, disabled: !p.can_sign, onclick: () => act({ action: "approve", approval: a.id }) }, "approve again")
        : el("button", { type: "button", class: "danger", "data-revoke": a.id, disabled: !p.can_sign,
            onclick: () => act({ action: "revoke", approval: a.id }) }, "revoke");
      tb.append(el("tr", { class: a.revoked ? "revoked" : "", "data-approval": a.id },
        el("td", {}, a.id), el("td", {}, a.holder || ""), el("td", {}, (a.remote || []).join(", ")),
        el("td", {}, (a.services || []).join(", ") || "any"), el("td", {}, (a.sites || []).join(", ") || "all"), el("td", {}, btn)));
    }
  }

  function drawChart(cv, hist) {
    const ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
    ctx.clearRect(0, 0, W, H);
    if (!hist.length) return;
    const t0 = hist[0].t, t1 = Math.max(hist[hist.length - 1].t, t0 + 1);
    let top = 1;
    for (const p of hist) top = Math.max(top, p.p, p.cap);
    top *= 1.15;
    const x = (t) => 30 + ((t - t0) / (t1 - t0)) * (W - 36), y = (v) => H - 14 - (v / top) * (H - 24);
    ctx.fillStyle = "#667"; ctx.font = "10px sans-serif";
    ctx.fillText(kw(top), 0, 10); ctx.fillText("0", 18, H - 12);
    ctx.lineWidth = 2; ctx.strokeStyle = "#1f6feb"; ctx.beginPath();
    hist.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.p)) : ctx.moveTo(x(p.t), y(p.p))));
    ctx.stroke();
    ctx.strokeStyle = "#d1242f"; ctx.setLineDash([5, 4]); ctx.beginPath();
    let pen = false;
    for (const p of hist) {
      if (p.cap > 0) { pen ? ctx.lineTo(x(p.t), y(p.cap)) : ctx.moveTo(x(p.t), y(p.cap)); pen = true; } else pen = false;
    }
    ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#1f6feb"; ctx.fillText("power", W - 80, 10);
    ctx.fillStyle = "#d1242f"; ctx.fillText("cap", W - 30, 10);
  }

  function renderFeeds(devs) {
    const box = $("#feeds");
    const feeds = [];
    for (const d of devs) for (const f of d.feeds || []) feeds.push([d, f]);
    if (!feeds.length) { box.replaceChildren(el("p", { class: "empty" }, "No relay controller has reported a feed yet.")); return; }
    const keep = new Set();
    for (const [d, f] of feeds) {
      const key = d.id + "/" + f.id;
      keep.add(key);
      let div = box.querySelector('.feed[data-key="' + CSS.escape(key) + '"]');
      if (!div) {
        const cap = el("input", { type: "number", min: "0.1", step: "0.1", placeholder: "cap kW", class: "cap-input" });
        div = el("div", { class: "feed", "data-key": key, "data-device": d.id, "data-feed": f.id },
          el("h3", {}, f.id + " @ " + d.id + (d.site ? " (" + d.site + ")" : "")),
          el("canvas", { width: 420, height: 160 }),
          el("div", { class: "figures" }),
          el("div", { class: "circuits" }),
          el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); act({ action: "throttle.set", target: d.id, feed: f.id, cap_kw: parseFloat(cap.value) }); } },
            cap, el("button", { type: "submit", class: "throttle-set" }, "set throttle"),
            el("button", { type: "button", class: "throttle-clear", onclick: () => act({ action: "throttle.clear", target: d.id, feed: f.id }) }, "clear")));
        box.querySelector(".empty")?.remove();
        box.append(div);
      }
      div.setAttribute("data-power", String(f.power_w));
      div.setAttribute("data-cap", String(f.cap_w));
      div.setAttribute("data-online", String(d.online));
      $(".figures", div).textContent = "power " + kw(f.power_w) + (f.cap_w > 0 ? ", cap " + kw(f.cap_w) : ", no cap") + (f.status ? " — " + f.status : "") + (d.online ? "" : " (device offline)");
      $(".circuits", div).replaceChildren(...(f.circuits || []).map((c) =>
        el("span", { class: c.on ? "on" : "off", "data-circuit": c.id }, c.id + (c.protected ? " (protected)" : "") + ": " + (c.on ? "on" : "off"))));
      drawChart($("canvas", div), f.history || []);
    }
    for (const div of box.querySelectorAll(".feed")) if (!keep.has(div.getAttribute("data-key"))) div.remove();
  }

  function renderActions(acts) {
    const ul = $("#actions");
    ul.replaceChildren(...acts.map((a) => {
      const li = el("li", { "data-action": a.id }, fmtTime(a.at) + " " + a.kind + " → " + a.target + (a.detail ? " " + a.detail : "") + ": ");
      if (a.serial) li.append(el("span", { class: "res-ok" }, "policy serial " + a.serial + " enforced by " + (a.applied || []).length + " device(s) " + (a.applied || []).join(", ")));
      for (const r of a.results || [])
        li.append(el("span", { class: r.ok ? "res-ok" : "res-bad" }, " " + r.device + ": " + (r.ok ? "ok" : "refused (" + r.reason + ": " + r.error + ")") + (r.result ? " " + JSON.stringify(r.result) : "") + ";"));
      if (!a.serial && !(a.results || []).length) li.append(el("span", { class: "empty" }, "waiting for devices…"));
      return li;
    }));
  }

  let evAfter = 0;
  function evQuery() {
    const p = new URLSearchParams();
    for (const [k, id] of [["device", "#ev-device"], ["type", "#ev-type"], ["severity", "#ev-sev"]]) {
      const v = $(id).value.trim();
      if (v) p.set(k, v);
    }
    return p;
  }
  async function refreshEvents(reset) {
    const tb = $("#events tbody");
    if (reset) { evAfter = 0; tb.replaceChildren(); }
    const p = evQuery();
    p.set("after", evAfter);
    const r = await fetch("/api/events?" + p);
    if (!r.ok) return;
    const evs = await r.json();
    for (const e of evs) {
      evAfter = Math.max(evAfter, e.n);
      const details = e.fields ? Object.entries(e.fields).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(" ") : "";
      tb.prepend(el("tr", { class: "sev-" + e.severity, "data-type": e.type },
        el("td", {}, fmtTime(e.ts)), el("td", {}, e.device), el("td", {}, e.severity), el("td", {}, e.type), el("td", {}, details)));
    }
    while (tb.children.length > 300) tb.lastChild.remove();
  }

  async function refresh() {
    try {
      const r = await fetch("/api/state");
      const s = await r.json();
      $("#conn").textContent = s.connected ? "broker connected" : "broker not connected" + (s.conn_error ? ": " + s.conn_error : "");
      $("#conn").className = s.connected ? "ok" : "bad";
      $("#ingest").textContent = s.ingested + " messages, " + s.ingest_rate.toFixed(1) + "/s";
      renderFleet(s.devices || []);
      renderPolicy(s);
      renderFeeds(s.devices || []);
      renderActions(s.actions || []);
      await refreshEvents(false);
      document.body.setAttribute("data-refreshed", String(Date.now()));
    } catch (e) {
      $("#conn").textContent = "console server unreachable";
      $("#conn").className = "bad";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#event-filter").addEventListener("input", () => refreshEvents(true));
    $("#event-filter").addEventListener("submit", (e) => e.preventDefault());
    $("#new-approval").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = e.target.elements, split = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
      act({ action: "approve", new: { id: f.namedItem("id").value.trim(), holder: f.holder.value.trim(), remote: split(f.remote.value), services: split(f.services.value) } });
    });
    refresh();
    setInterval(refresh, 1000);
  });
})();
