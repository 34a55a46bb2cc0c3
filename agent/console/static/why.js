// LinkGuard console: "why is this link cut?", what crosses the border, and
// the fleet's events, searched in the store. Read-only: GETs with the
// session cookie; nothing here signs.
"use strict";
(function () {
  const { $, el } = window.lgDom; // app.js's, which loads first
  const fmtTime = (s) => (s ? new Date(s).toISOString().slice(0, 19).replace("T", " ") + "Z" : "—");
  const num = (n) => Number(n || 0).toLocaleString("en");
  const bytes = (n) => { n = Number(n || 0); for (const u of ["B", "kB", "MB", "GB", "TB"]) { if (n < 1000 || u === "TB") return (u === "B" ? n : n.toFixed(1)) + " " + u; n /= 1000; } };
  const svc = (proto, port) => proto + (port ? "/" + port : "");
  const visible = () => !$("#app").hidden;
  async function get(path) {
    const r = await fetch(path, { headers: { Accept: "application/json" } });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error || r.status + " " + r.statusText);
    return j;
  }

  // --- why is this link cut? -----------------------------------------
  async function why(q) {
    const out = $("#why-answer");
    out.replaceChildren(el("p", { class: "empty" }, "looking…"));
    out.removeAttribute("data-error");
    let a;
    try { a = await get("/api/why?" + new URLSearchParams({ q })); } catch (e) {
      out.setAttribute("data-error", e.message);
      out.replaceChildren(el("p", { class: "bad-text" }, e.message));
      return;
    }
    const verdicts = a.verdicts || [], seen = a.seen || [];
    out.setAttribute("data-verdicts", verdicts.map((v) => v.explanation.verdict).join(" "));
    out.setAttribute("data-devices", seen.map((s) => s.device).join(" "));
    out.setAttribute("data-approvals", [...new Set(verdicts.flatMap((v) => (v.explanation.candidates || []).map((c) => c.id).concat(v.explanation.approval ? [v.explanation.approval.id] : [])))].join(" "));
    const kids = [];
    if (seen.length) {
      kids.push(el("h3", {}, "Seen by"));
      kids.push(el("ul", { class: "why-seen" }, ...seen.map((s) => el("li", { "data-device": s.device },
        el("b", {}, s.device), " at " + (s.site || "?") + ": " + num(s.events) + " denied-flow event(s), last " + fmtTime(s.last) + " — " +
        s.src + " → " + s.dst + " " + svc(s.proto, s.dport) + ", " + s.verdict + " (" + s.reason + "), " + s.action))));
    } else {
      kids.push(el("p", { class: "empty" }, "No device reported a denied flow like it since " + fmtTime(a.since) + "."));
    }
    for (const v of verdicts) {
      const e = v.explanation;
      const box = el("div", { class: "why-verdict verdict-" + e.verdict, "data-verdict": e.verdict, "data-site": v.site || "" });
      box.append(el("h3", {}, (v.site ? "At " + v.site : "At any site") + ": ", el("span", { class: "verdict" }, e.verdict.toUpperCase()), " — " + e.reason));
      if (e.approval) box.append(el("p", {}, "Covered by approval ", el("b", {}, e.approval.id), " (" + e.approval.holder + ")."));
      const cands = e.candidates || [];
      if (cands.length) {
        const ok = (b) => el("td", { class: b ? "yes" : "no" }, b ? "ok" : "NO");
        box.append(el("div", { class: "scroll" }, el("table", { class: "why-candidates" },
          el("thead", {}, el("tr", {}, ...["Approval", "Holder", "Lists", "Site", "Service", "Window", "Sites", "Services", "Valid"].map((h) => el("th", {}, h)))),
          el("tbody", {}, ...cands.map((c) => el("tr", { "data-approval": c.id }, el("td", {}, c.id), el("td", {}, c.holder), el("td", {}, c.prefix),
            ok(c.site_ok), ok(c.service_ok), ok(c.window_ok), el("td", {}, (c.sites || []).join(", ") || "every site"),
            el("td", {}, (c.services || []).join(", ") || "any"), el("td", {}, c.window)))))));
      } else if (e.verdict !== "domestic") {
        box.append(el("p", {}, "No approval lists " + e.remote + "."));
      }
      box.append(el("ul", { class: "why-advice" }, ...(v.advice || []).map((t) => el("li", {}, t))));
      box.append(el("details", {}, el("summary", {}, "as linkguard policy explain prints it"), el("pre", {}, v.text)));
      kids.push(box);
    }
    for (const n of a.notes || []) kids.push(el("p", { class: "empty" }, n));
    out.replaceChildren(...kids);
  }

  // --- what crosses the border ----------------------------------------
  async function inventory() {
    const p = new URLSearchParams({ since: $("#inv-since").value });
    const site = $("#inv-site").value.trim();
    if (site) p.set("site", site);
    const csv = new URLSearchParams(p); csv.set("format", "csv");
    $("#inv-csv").href = "/api/inventory?" + csv;
    const div = $("#inventory");
    let inv;
    try { inv = await get("/api/inventory?" + p); } catch (e) {
      div.setAttribute("data-error", e.message);
      div.replaceChildren(el("p", { class: "bad-text" }, e.message));
      return;
    }
    div.removeAttribute("data-error");
    const table = (title, verdict, rows) => el("div", { class: "inv inv-" + verdict },
      el("h3", {}, title + " (" + rows.length + ")"),
      rows.length ? el("div", { class: "scroll" }, el("table", { "data-verdict": verdict },
        el("thead", {}, el("tr", {}, ...["Remote prefix", "Service", verdict === "approved" ? "Approval" : "", "Flows", "Packets", "Bytes", "Routers"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows.map((r) => el("tr", { "data-prefix": r.prefix, "data-verdict": verdict, "data-service": svc(r.proto, r.dport) },
          el("td", {}, r.prefix), el("td", {}, svc(r.proto, r.dport)), el("td", {}, r.approval || ""), el("td", { class: "n" }, num(r.flows)),
          el("td", { class: "n" }, num(r.packets)), el("td", { class: "n" }, bytes(r.bytes)), el("td", { class: "n" }, num(r.devices))))))) :
        el("p", { class: "empty" }, "none"));
    div.setAttribute("data-loaded", String(Date.now()));
    div.replaceChildren(el("p", { class: "empty" }, (inv.site ? "Site " + inv.site : "Every site") + ", " + fmtTime(inv.since) + " to " + fmtTime(inv.until)),
      table("Denied", "denied", inv.denied || []), table("Monitored", "monitored", inv.monitored || []), table("Approved", "approved", inv.approved || []));
  }

  // --- events, from the store -----------------------------------------
  let evNext = 0, evGen = 0, paged = false;
  function evParams() {
    const p = new URLSearchParams();
    for (const [k, id] of [["q", "#ev-q"], ["device", "#ev-device"], ["site", "#ev-site"], ["type", "#ev-type"], ["severity", "#ev-sev"], ["since", "#ev-since"]]) {
      const v = $(id).value.trim();
      if (v) p.set(k, v);
    }
    p.set("limit", "100");
    return p;
  }
  function details(e) {
    if (e.folded) return e.folded + " denied-traffic summar" + (e.folded === 1 ? "y" : "ies") + " since " + fmtTime(e.first) + ": " + num(e.packets) + " packets, " + bytes(e.bytes) + ", " + num(e.flows) + " flows denied";
    return e.fields ? Object.entries(e.fields).filter(([k]) => k !== "site").map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(" ") : "";
  }
  async function events(more) {
    paged = more;
    const gen = more ? evGen : ++evGen, p = evParams();
    if (more && evNext) p.set("before", String(evNext));
    const tb = $("#events tbody");
    let r;
    try { r = await get("/api/events?" + p); } catch (e) {
      if (gen !== evGen) return;
      $("#ev-status").textContent = e.message;
      $("#ev-status").className = "bad-text";
      return;
    }
    if (gen !== evGen) return; // a newer search took over
    $("#ev-status").textContent = num(r.total) + " event(s) match" + (r.query && r.query.approvals && r.query.approvals.length ? " (approvals " + r.query.approvals.join(", ") + ")" : "");
    $("#ev-status").className = "";
    $("#ev-counts").replaceChildren(...(r.counts || []).slice(0, 24).map((c) => el("span", { class: "count", "data-type": c.type, "data-site": c.site }, c.type + (c.site ? " @ " + c.site : "") + ": " + num(c.count))));
    const rows = (r.events || []).map((e) => el("tr", { class: "sev-" + e.severity + (e.folded ? " folded" : ""), "data-type": e.type, "data-n": String(e.n), "data-folded": String(e.folded || 0) },
      el("td", {}, fmtTime(e.ts)), el("td", {}, e.device), el("td", {}, e.site || ""), el("td", {}, e.severity), el("td", {}, e.type), el("td", {}, details(e))));
    if (more) tb.append(...rows); else tb.replaceChildren(...rows);
    evNext = r.next_before || 0;
    $("#ev-older").hidden = !evNext;
  }

  let invOpen = false;
  document.addEventListener("DOMContentLoaded", () => {
    $("#why-form").addEventListener("submit", (e) => { e.preventDefault(); why($("#why-q").value.trim()); });
    $("#inv-form").addEventListener("submit", (e) => { e.preventDefault(); invOpen = true; inventory(); });
    $("#inv-since").addEventListener("change", () => { invOpen = true; inventory(); });
    let typing = 0;
    $("#event-filter").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => events(false), 250); });
    $("#event-filter").addEventListener("submit", (e) => e.preventDefault());
    $("#ev-older").addEventListener("click", () => events(true).catch(() => {}));
    // The newest page follows the fleet; an operator reading older pages
    // is not interrupted.
    // Every 5 s: a fleet's hour of events is counted at each refresh.
    setInterval(() => { if (visible() && !paged) events(false).catch(() => {}); }, 5000);
    setInterval(() => { if (visible() && invOpen) inventory().catch(() => {}); }, 15000);
    const first = setInterval(() => { if (visible()) { clearInterval(first); events(false).catch(() => {}); } }, 300);
  });
})();
