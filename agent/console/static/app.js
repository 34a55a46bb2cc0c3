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
      $("#confirm-error").textContent = "";
      $("#confirm-ok").onclick = (e) => {
        e.preventDefault();
        if ($("#confirm-reason").value.trim().length >= 3) done(true);
        else $("#confirm-error").textContent = "A reason is required (at least 3 characters): it is signed and kept in the audit log.";
      };
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
    const warn = (subject) => (s.warnings || []).find((w) => w.subject === subject);
    const pw = warn("the fleet policy (serial " + p.serial + ")");
    if (pw) st.append(el("span", { class: "expiry", "data-expiry": "policy" }, " " + pw.text));
    const lbl = (label, ...kids) => el("td", { "data-label": label }, ...kids);
    for (const a of p.approvals || []) {
      const btn = a.revoked
        ? el("button", { type: "button", "data-approve": a.id, disabled: !ok, onclick: () => propose({ action: "approve", approval: a.id }, "Approve " + a.id + " again, as it was?") }, "approve again")
        : el("button", { type: "button", class: "danger", "data-revoke": a.id, disabled: !ok,
            onclick: () => propose({ action: "revoke", approval: a.id }, "Revoke " + a.id + " (" + (a.holder || "") + ")? Its traffic is cut at every site it covers.") }, "revoke");
      // A revoked approval shows what it was, in the version before.
      const life = el("div", {}, (a.valid_from ? fmtTime(a.valid_from) : "always") + " – " + (a.valid_until ? fmtTime(a.valid_until) : "until revoked"));
      const w = !a.revoked && warn("approval " + a.id);
      if (w) life.append(el("div", { class: "expiry", "data-expiry": a.id }, w.text));
      if (a.not_yet) life.append(el("div", { class: "empty" }, "not yet in force"));
      if (a.revoked) life.append(el("div", { class: "revoked-by", "data-revoked-by": (a.revoked_by || []).join(",") },
        "revoked " + fmtTime(a.revoked_at) + (a.revoked_serial ? " (serial " + a.revoked_serial + ")" : "") + (a.revoked_by ? " by " + a.revoked_by.join(", ") : "") + (a.revoked_note ? ": " + a.revoked_note : "")));
      tb.append(el("tr", { class: a.revoked ? "revoked" : a.expiring ? "expiring" : "", "data-approval": a.id },
        lbl("Approval", a.id), lbl("Holder", a.holder || ""), lbl("Remote", (a.remote || []).join(", ")),
        lbl("Services", (a.services || []).join(", ") || "any"), lbl("Sites", (a.sites || []).join(", ") || "all"), el("td", { "data-label": "Valid", class: "life" }, life), lbl("", btn)));
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
      renderPolicy(s);
      renderPending(s.pending || []);
      renderRoster(s.roster);
      renderActions(s.actions || []);
      for (const fn of hooks) await fn(s).catch((e) => console.error(e));
      document.body.setAttribute("data-refreshed", String(Date.now()));
    } catch (e) {
      if (session) { $("#conn").textContent = "console server: " + e.message; $("#conn").className = "bad"; }
    }
  }

  // What sites.js builds on: the views of sites, devices, feeds and the
  // audit log live there, refreshed with the rest.
  const hooks = [];
  window.LG = { $, el, api, can, command, fmtTime, kw, say, onRefresh: (fn) => hooks.push(fn) };

  document.addEventListener("DOMContentLoaded", async () => {
    $("#logout").addEventListener("click", logout);
    $("#new-approval").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = e.target.elements, split = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
      // A date: valid to the end of that day, UTC like every time here.
      const until = f.valid_until.value ? f.valid_until.value + "T23:59:59Z" : undefined;
      propose({ action: "approve", approval: f.namedItem("id").value.trim(), new: { id: f.namedItem("id").value.trim(), holder: f.holder.value.trim(), remote: split(f.remote.value), services: split(f.services.value), valid_until: until } },
        "Approve the new link " + f.namedItem("id").value.trim() + "?");
    });
    if (!window.crypto || !crypto.subtle) { say("this page needs WebCrypto: open it over https or on localhost", false); }
    await loadKey().catch((e) => say("key store: " + e.message, false));
    try { session = await api("GET", "/api/session"); showApp(); } catch (e) { session = null; showLogin(); }
    setInterval(refresh, 1000);
  });
})();
