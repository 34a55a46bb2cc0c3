// LinkGuard console. The operator's Ed25519 key is made here with WebCrypto,
// non-extractable, and kept in this browser's IndexedDB: it signs the login
// challenge and every action; the server only verifies and relays. Policy
// changes are proposals the committee co-signs, each in their own browser
// (or with lgctl policy cosign).
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
  window.lgDom = { $, el }; // shared with why.js
  const fmtTime = (s) => (s ? new Date(s).toISOString().slice(0, 16).replace("T", " ") + "Z" : "—");
  const kw = (w) => (w / 1000).toFixed(1) + " kW";
  const enc = new TextEncoder();
  const b64 = (u8) => { let s = ""; for (const b of u8) s += String.fromCharCode(b); return btoa(s); };
  const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const concat = (...parts) => { const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0)); let i = 0; for (const p of parts) { out.set(p, i); i += p.length; } return out; };
  // DSSE's pre-authentication encoding: what every signature covers.
  function pae(type, payload) {
    const t = enc.encode(type);
    return concat(enc.encode("DSSEv1 " + t.length + " "), t, enc.encode(" " + payload.length + " "), payload);
  }

  // --- the operator's key, in IndexedDB -------------------------------
  function idb() {
    return new Promise((res, rej) => {
      const r = indexedDB.open("linkguard-console", 1);
      r.onupgradeneeded = () => r.result.createObjectStore("keys");
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
  }
  async function idbDo(mode, fn) {
    const db = await idb();
    return new Promise((res, rej) => {
      const tx = db.transaction("keys", mode), req = fn(tx.objectStore("keys"));
      tx.oncomplete = () => res(req.result);
      tx.onerror = () => rej(tx.error);
    });
  }
  let myKey = null; // {privateKey, publicKey, name, spki}
  async function loadKey() { myKey = (await idbDo("readonly", (s) => s.get("operator"))) || null; return myKey; }
  async function makeKey(name) {
    const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const spki = b64(new Uint8Array(await crypto.subtle.exportKey("spki", kp.publicKey)));
    myKey = { privateKey: kp.privateKey, publicKey: kp.publicKey, name, spki };
    await idbDo("readwrite", (s) => s.put(myKey, "operator"));
    return myKey;
  }
  async function sign(bytes) { return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, myKey.privateKey, bytes)); }

  // --- session ---------------------------------------------------------
  let session = null; // from /api/login or /api/session: operator, roles, csrf
  const can = (role) => !!session && (session.roles || []).includes(role);
  async function api(method, path, body) {
    const h = { "Content-Type": "application/json" };
    if (session) h["X-CSRF-Token"] = session.csrf;
    const r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const j = await r.json().catch(() => ({}));
    if (r.status === 401) { session = null; showLogin(); }
    if (!r.ok) throw new Error(j.error || r.status + " " + r.statusText);
    return j;
  }
  function say(text, ok) {
    const st = $("#action-status");
    st.textContent = text;
    st.className = ok ? "ok" : "bad";
  }
  async function login() {
    const ch = await api("GET", "/api/login/challenge");
    const sig = await sign(enc.encode(ch.context + "\n" + location.host + "\n" + ch.nonce));
    session = await api("POST", "/api/login", { public_key: myKey.spki, nonce: ch.nonce, signature: b64(sig) });
    showApp();
  }
  async function logout() { await api("POST", "/api/logout", {}).catch(() => {}); session = null; showLogin(); }
  function showLogin() {
    $("#app").hidden = true;
    $("#login").hidden = false;
    $("#operator").textContent = "";
    $("#login-state").setAttribute("data-operator", "");
    const box = $("#login-box");
    box.replaceChildren();
    if (!myKey) {
      const name = el("input", { id: "enrol-name", placeholder: "your name", required: true });
      box.append(el("p", {}, "This browser holds no LinkGuard key yet. Make one: it stays in this browser and cannot be copied out of it."),
        el("form", { class: "inline", onsubmit: async (e) => {
          e.preventDefault();
          try { await makeKey(name.value.trim()); await api("POST", "/api/enrol", { name: myKey.name, public_key: myKey.spki }); showLogin(); }
          catch (err) { say("enrolment failed: " + err.message, false); }
        } }, name, el("button", { type: "submit", id: "make-key" }, "Make my key")));
      return;
    }
    box.append(
      el("p", {}, "Your public key (" + myKey.name + "). Give it to the committee to be added to the roster, then log in:"),
      el("pre", { id: "my-key", "data-spki": myKey.spki }, myKey.spki),
      el("button", { type: "button", id: "login-button", onclick: () => login().catch((e) => say(e.message, false)) }, "Log in"),
      el("p", { id: "login-error", class: "bad" }));
  }
  function showApp() {
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#operator").textContent = session.operator + " (" + (session.roles || []).join(", ") + ")";
    $("#login-state").setAttribute("data-operator", session.operator);
    refresh();
  }

  // A confirmation with a reason, which goes into the audit log.
  function confirmReason(text) {
    return new Promise((resolve) => {
      const d = $("#confirm");
      $("#confirm-text").textContent = text;
      $("#confirm-reason").value = "";
      const done = (ok) => { d.close(); resolve(ok ? $("#confirm-reason").value.trim() : null); };
      $("#confirm-ok").onclick = (e) => { e.preventDefault(); if ($("#confirm-reason").value.trim().length >= 3) done(true); };
      $("#confirm-cancel").onclick = (e) => { e.preventDefault(); done(false); };
      d.showModal();
    });
  }

  // propose asks for a policy change and signs it at once.
  async function propose(body, what) {
    const reason = await confirmReason(what + " This makes a proposal the committee must co-sign. Reason:");
    if (reason == null) return;
    try {
      const p = await api("POST", "/api/proposals", Object.assign(body, { reason }));
      const done = await signPending(p);
      say("proposal " + p.id + " (serial " + p.serial + "): " + done.signatures.length + " of " + done.needed + " signatures" + (done.state === "published" ? ", published" : ""), true);
    } catch (e) { say("refused: " + e.message, false); }
    refresh();
  }
  async function signPending(p) {
    const sig = await sign(pae(p.payload_type, unb64(p.payload)));
    return api("POST", "/api/pending/" + encodeURIComponent(p.id) + "/sign", { signature: b64(sig) });
  }
  // command builds, signs and submits a command.
  async function command(target, type, args, what) {
    const reason = await confirmReason(what + " Reason:");
    if (reason == null) return;
    const now = Date.now();
    const p = { id: crypto.randomUUID(), target, issued: new Date(now - 5000).toISOString(), expires: new Date(now + 10 * 60000).toISOString(), type };
    if (args) p.args = args;
    const payload = enc.encode(JSON.stringify(p));
    try {
      const sig = await sign(pae("application/vnd.linkguard.command+json", payload));
      const r = await api("POST", "/api/commands", { payload: b64(payload), signature: b64(sig), reason });
      say(type + " " + (r.state === "published" ? "sent" : "waiting for " + (r.needed - r.signatures.length) + " more signature(s)") + " (" + r.id + ")", true);
    } catch (e) { say("refused: " + e.message, false); }
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
        el("td", { class: "state " + (d.online ? "online" : "offline"), title: d.silent ? "its last state says online, but nothing has come from it for too long" : "" }, d.online ? "online" : d.silent ? "silent" : "offline"),
        el("td", { class: "serial" }, d.policy_serial || "none"),
        el("td", {}, fmtTime(d.policy_expires)),
        el("td", { class: "denied" }, f ? f.denied : ""), el("td", {}, f ? f.passed : ""),
        el("td", {}, appr),
        el("td", {}, el("button", { type: "button", "data-rebirth": d.id, disabled: !can("technician"), onclick: () => command(d.id, "rebirth", null, "Rebirth " + d.id + "?") }, "rebirth")),
      );
      tb.append(tr);
    }
  }

  function renderPolicy(s) {
    const p = s.policy, st = $("#policy-status");
    st.setAttribute("data-verified", String(!!p.verified));
    st.setAttribute("data-serial", String(p.serial || 0));
    if (!s.has_policy) st.textContent = "none on the broker";
    else if (p.verified) st.textContent = "serial " + p.serial + ", expires " + fmtTime(p.expires) + (p.expired ? " (EXPIRED)" : "") + " — verified, signed by " + (p.signers || []).join(", ");
    else st.textContent = "UNVERIFIED (" + p.problem + "): shown as found, never built on";
    st.className = s.has_policy && p.verified ? "" : "bad";
    const tb = $("#approvals tbody");
    tb.replaceChildren();
    const ok = s.has_policy && p.verified && can("committee");
    for (const a of p.approvals || []) {
      const btn = a.revoked
        ? el("button", { type: "button", "data-approve": a.id, disabled: !ok, onclick: () => propose({ action: "approve", approval: a.id }, "Approve " + a.id + " again?") }, "approve again")
        : el("button", { type: "button", class: "danger", "data-revoke": a.id, disabled: !ok,
            onclick: () => propose({ action: "revoke", approval: a.id }, "Revoke " + a.id + " (" + (a.holder || "") + ")?") }, "revoke");
      tb.append(el("tr", { class: a.revoked ? "revoked" : "", "data-approval": a.id },
        el("td", {}, a.id), el("td", {}, a.holder || ""), el("td", {}, (a.remote || []).join(", ")),
        el("td", {}, (a.services || []).join(", ") || "any"), el("td", {}, (a.sites || []).join(", ") || "all"), el("td", {}, btn)));
    }
  }

  function renderPending(list) {
    const ul = $("#pending");
    ul.replaceChildren(...list.map((p) => {
      const signers = (p.signatures || []).map((x) => x.operator);
      const li = el("li", { "data-pending": p.id, "data-state": p.state, "data-signatures": String(signers.length), "data-action": p.action, "data-detail": p.detail || "" },
        el("strong", {}, p.action + " " + (p.detail || "") + " → " + p.target), " ",
        p.serial ? "serial " + p.serial + " " : "",
        el("span", { class: p.state === "published" ? "res-ok" : p.state === "collecting" ? "" : "res-bad" }, p.state), " — ",
        signers.length + " of " + p.needed + " signatures" + (signers.length ? " (" + signers.join(", ") + ")" : "") + ", proposed by " + p.by + (p.reason ? ": “" + p.reason + "”" : ""));
      if (p.error) li.append(el("span", { class: "res-bad" }, " " + p.error));
      const role = p.class === "committee" ? "committee" : p.class === "protected" ? "grid" : p.class;
      if (p.state === "collecting" && can(role) && !signers.includes(session.operator)) {
        li.append(" ", el("button", { type: "button", "data-sign": p.id, onclick: async () => {
          try { const r = await signPending(p); say("signed " + p.id + ": " + r.signatures.length + " of " + r.needed + (r.state === "published" ? ", published" : ""), true); }
          catch (e) { say("refused: " + e.message, false); }
          refresh();
        } }, "review done: sign"));
      }
      li.append(" ", el("a", { href: "/api/pending/" + encodeURIComponent(p.id) + "/envelope" }, "envelope"));
      const det = el("details", {}, el("summary", {}, "what is signed"));
      if (p.changes && p.changes.length) det.append(el("ul", {}, ...p.changes.map((c) => el("li", {}, c))));
      det.append(el("pre", {}, new TextDecoder().decode(unb64(p.payload))));
      li.append(det);
      return li;
    }));
    if (!list.length) ul.append(el("li", { class: "empty" }, "Nothing waiting for signatures."));
  }

  function renderRoster(r) {
    $("#roster-summary").textContent = r ? "serial " + r.serial + ", expires " + fmtTime(r.expires) + "; thresholds: committee " + r.thresholds.Committee +
      ", grid " + r.thresholds.Grid + ", protected circuits " + r.thresholds.Protected + ", technician " + r.thresholds.Technician + ", release " + r.thresholds.Release
      : "no roster in force";
    const tb = $("#roster tbody");
    tb.replaceChildren(...((r && r.operators) || []).map((o) => el("tr", { "data-operator": o.id }, el("td", {}, o.id), el("td", {}, o.name || ""), el("td", {}, (o.roles || []).join(", ")), el("td", {}, (o.keys || []).map((k) => k.slice(0, 16)).join(" ")))));
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
          el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); command(d.id, "throttle.set", { feed: f.id, cap_kw: parseFloat(cap.value) }, "Cap " + f.id + " at " + cap.value + " kW?"); } },
            cap, el("button", { type: "submit", class: "throttle-set", disabled: !can("grid") }, "set throttle"),
            el("button", { type: "button", class: "throttle-clear", disabled: !can("grid"), onclick: () => command(d.id, "throttle.clear", { feed: f.id }, "Clear the throttle of " + f.id + "?") }, "clear")));
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

  // --- traffic by site, from the store's series -------------------------
  const hhmm = (t) => new Date(t).toISOString().slice(11, 16);
  const rate = (v) => (v >= 1000 ? (v / 1000).toFixed(1) + "k" : v.toFixed(v < 10 ? 1 : 0)) + "/s";
  function drawRates(cv, from, to, lines) {
    const ctx = cv.getContext("2d"), W = cv.width, H = cv.height, L = 44;
    ctx.clearRect(0, 0, W, H);
    let top = 1;
    for (const l of lines) for (const p of l.points) top = Math.max(top, p.v);
    top *= 1.15;
    const x = (t) => L + ((t - from) / (to - from)) * (W - L - 6), y = (v) => H - 16 - (v / top) * (H - 28);
    ctx.fillStyle = "#667"; ctx.font = "10px sans-serif"; ctx.strokeStyle = "#e4e7eb"; ctx.lineWidth = 1;
    ctx.fillText(rate(top), 0, 12); ctx.fillText("0", L - 10, H - 14);
    // The time axis: a tick every 15 minutes, in UTC like every time here.
    const step = 15 * 60000;
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      ctx.beginPath(); ctx.moveTo(x(t), 4); ctx.lineTo(x(t), H - 14); ctx.stroke();
      ctx.fillText(hhmm(t), x(t) - 14, H - 2);
    }
    lines.forEach((l, i) => {
      ctx.lineWidth = 2; ctx.strokeStyle = l.color; ctx.beginPath();
      // Each point is a minute's rate, drawn at the minute's middle.
      l.points.forEach((p, j) => (j ? ctx.lineTo(x(p.t + 30000), y(p.v)) : ctx.moveTo(x(p.t + 30000), y(p.v))));
      ctx.stroke();
      ctx.fillStyle = l.color;
      for (const p of l.points) ctx.fillRect(x(p.t + 30000) - 2, y(p.v) - 2, 4, 4); // a lone minute shows too
      ctx.fillText(l.name, W - 110 + i * 55, 12);
    });
  }

  let trafficAt = 0;
  async function refreshTraffic(devs) {
    if (Date.now() - trafficAt < 5000) return; // a minute's rollup moves slowly
    trafficAt = Date.now();
    const box = $("#traffic");
    const sites = [...new Set(devs.filter((d) => d.filter || d.kind === "router").map((d) => d.site).filter(Boolean))].sort();
    if (!sites.length) { box.replaceChildren(el("p", { class: "empty" }, "No router has reported traffic yet.")); return; }
    box.querySelector(".empty")?.remove();
    for (const div of box.querySelectorAll(".traffic")) if (!sites.includes(div.getAttribute("data-site"))) div.remove();
    for (const site of sites) {
      let div = box.querySelector('.traffic[data-site="' + CSS.escape(site) + '"]');
      if (!div) {
        div = el("div", { class: "traffic", "data-site": site }, el("h3", {}, site), el("canvas", { width: 420, height: 160 }), el("div", { class: "figures" }));
        box.append(div);
      }
      const q = (series) => api("GET", "/api/series?" + new URLSearchParams({ site, series, since: "1h" }));
      const [passed, denied] = await Promise.all([q("links.passed"), q("links.denied")]);
      const to = Date.now(), from = to - 3600000, sum = (s) => s.points.reduce((n, p) => n + p.v * s.res_s, 0);
      drawRates($("canvas", div), from, to, [{ name: "passed", color: "#1f6feb", points: passed.points }, { name: "denied", color: "#d1242f", points: denied.points }]);
      const last = (s) => (s.points.length ? s.points[s.points.length - 1].v : 0);
      div.setAttribute("data-points", String(passed.points.length + denied.points.length));
      div.setAttribute("data-passed-total", String(sum(passed)));
      div.setAttribute("data-denied-total", String(sum(denied)));
      $(".figures", div).textContent = "this minute: passed " + rate(last(passed)) + ", denied " + rate(last(denied)) +
        "; last hour: " + Math.round(sum(passed)) + " passed, " + Math.round(sum(denied)) + " denied";
    }
  }

  function renderActions(acts) {
    const ul = $("#actions");
    ul.replaceChildren(...acts.map((a) => {
      const li = el("li", { "data-action": a.id }, fmtTime(a.at) + " " + a.kind + " → " + a.target + (a.detail ? " " + a.detail : "") + (a.by ? " signed by " + a.by.join(", ") : "") + ": ");
      if (a.serial) li.append(el("span", { class: "res-ok" }, "policy serial " + a.serial + " enforced by " + (a.applied || []).length + " device(s) " + (a.applied || []).join(", ")));
      for (const r of a.results || [])
        li.append(el("span", { class: r.ok ? "res-ok" : "res-bad" }, " " + r.device + ": " + (r.ok ? "ok" : "refused (" + r.reason + ": " + r.error + ")") + (r.result ? " " + JSON.stringify(r.result) : "") + ";"));
      if (!a.serial && !(a.results || []).length) li.append(el("span", { class: "empty" }, "waiting for devices…"));
      return li;
    }));
  }

  async function refresh() {
    if (!session) return;
    try {
      const s = await api("GET", "/api/state");
      if (s.session) { session.roles = s.session.roles; $("#operator").textContent = session.operator + " (" + (session.roles || []).join(", ") + ")"; }
      $("#conn").textContent = s.connected ? "broker connected" : "broker not connected" + (s.conn_error ? ": " + s.conn_error : "");
      $("#conn").className = s.connected ? "ok" : "bad";
      $("#ingest").textContent = s.ingested + " messages, " + s.ingest_rate.toFixed(1) + "/s";
      renderFleet(s.devices || []);
      renderPolicy(s);
      renderPending(s.pending || []);
      renderRoster(s.roster);
      renderFeeds(s.devices || []);
      refreshTraffic(s.devices || []).catch((e) => { $("#traffic").setAttribute("data-error", e.message); });
      renderActions(s.actions || []);
      document.body.setAttribute("data-refreshed", String(Date.now()));
    } catch (e) {
      if (session) { $("#conn").textContent = "console server: " + e.message; $("#conn").className = "bad"; }
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("#logout").addEventListener("click", logout);
    $("#new-approval").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = e.target.elements, split = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
      propose({ action: "approve", approval: f.namedItem("id").value.trim(), new: { id: f.namedItem("id").value.trim(), holder: f.holder.value.trim(), remote: split(f.remote.value), services: split(f.services.value) } },
        "Approve the new link " + f.namedItem("id").value.trim() + "?");
    });
    if (!window.crypto || !crypto.subtle) { say("this page needs WebCrypto: open it over https or on localhost", false); }
    await loadKey().catch((e) => say("key store: " + e.message, false));
    try { session = await api("GET", "/api/session"); showApp(); } catch (e) { session = null; showLogin(); }
    setInterval(refresh, 1000);
  });
})();
