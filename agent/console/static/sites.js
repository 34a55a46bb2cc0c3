// LinkGuard console: the fleet by site. The overview lists sites (their
// devices' health, policy serials, traffic rates, feeds against cap), a
// site's page its devices, traffic and feeds with charts from the store's
// series; devices are searched and paged on the server, so a national
// fleet never comes to the browser whole. Also here: expiry warnings and
// the audit log. Built on what app.js exposes as window.LG.
"use strict";
(function () {
  const { $, el, api, can, command, fmtTime, kw } = window.LG;
  const hhmm = (t) => new Date(t).toISOString().slice(11, 16);
  const rate = (v) => (v >= 1000 ? (v / 1000).toFixed(1) + "k" : v.toFixed(v < 10 ? 1 : 0)) + "/s";
  const HOUR = 3600000, MINUTE = 60000;

  // chart draws lines over [from, to] with a UTC time axis. Each line is
  // {name, color, points: [{t, v, min, max}], res (ms a point covers),
  // step (drawn flat over its bucket: a cap's steps), band (its min–max)};
  // fmt labels the value axis.
  function chart(cv, from, to, lines, fmt) {
    const ctx = cv.getContext("2d"), W = cv.width, H = cv.height, L = 44;
    ctx.clearRect(0, 0, W, H);
    let top = 1;
    for (const l of lines) for (const p of l.points) top = Math.max(top, p.v, p.max ?? 0);
    top *= 1.15;
    const x = (t) => L + ((Math.min(Math.max(t, from), to) - from) / (to - from)) * (W - L - 6), y = (v) => H - 16 - (v / top) * (H - 28);
    ctx.fillStyle = "#667"; ctx.font = "10px sans-serif"; ctx.strokeStyle = "#e4e7eb"; ctx.lineWidth = 1;
    ctx.fillText(fmt(top), 0, 12); ctx.fillText("0", L - 10, H - 14);
    // Ticks every 5, 15 or 60 minutes by the span, in UTC like every time here.
    const tick = to - from > 2 * HOUR ? HOUR : to - from > 30 * MINUTE ? 15 * MINUTE : 5 * MINUTE;
    for (let t = Math.ceil(from / tick) * tick; t <= to; t += tick) {
      ctx.beginPath(); ctx.moveTo(x(t), 4); ctx.lineTo(x(t), H - 14); ctx.stroke();
      ctx.fillText(hhmm(t), x(t) - 14, H - 2);
    }
    lines.forEach((l, i) => {
      const res = l.res || MINUTE;
      if (l.band && l.points.length) {
        ctx.fillStyle = l.color + "33"; ctx.beginPath();
        l.points.forEach((p, j) => (j ? ctx.lineTo(x(p.t + res / 2), y(p.max ?? p.v)) : ctx.moveTo(x(p.t + res / 2), y(p.max ?? p.v))));
        for (const p of [...l.points].reverse()) ctx.lineTo(x(p.t + res / 2), y(p.min ?? p.v));
        ctx.closePath(); ctx.fill();
      }
      ctx.lineWidth = 2; ctx.strokeStyle = l.color; ctx.beginPath();
      let prev = null;
      for (const p of l.points) {
        if (l.step) {
          // Flat over the bucket, joined to the bucket before by a riser.
          prev && prev.t + res === p.t ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v));
          ctx.lineTo(x(p.t + res), y(p.v));
        } else {
          prev ? ctx.lineTo(x(p.t + res / 2), y(p.v)) : ctx.moveTo(x(p.t + res / 2), y(p.v));
        }
        prev = p;
      }
      ctx.stroke();
      ctx.fillStyle = l.color;
      if (!l.step) for (const p of l.points) ctx.fillRect(x(p.t + res / 2) - 2, y(p.v) - 2, 4, 4); // a lone minute shows too
      ctx.fillText(l.name, W - 120 + i * 45, 12);
    });
  }
  LG.chart = chart;

  // --- where we are: #/ (the sites) or #/site/NAME -----------------------
  const view = { site: null, sitePage: 1, devPage: 1 };
  function route() {
    const m = location.hash.match(/^#\/site\/(.+)$/);
    view.site = m ? decodeURIComponent(m[1]) : null;
    view.devPage = 1;
    $("#sites-section").hidden = !!view.site;
    $("#site-section").hidden = !view.site;
    $("#crumb-site").textContent = view.site ? " › " + view.site : "";
    $("#devices-title").textContent = view.site ? "Devices at " + view.site : "Devices";
    document.body.setAttribute("data-view", view.site ? "site" : "sites");
    if (view.site) { $("#site-name").textContent = view.site; $("#traffic").replaceChildren(); $("#feeds").replaceChildren(); }
    chartsAt = 0;
    refresh(lastState, true);
  }
  const siteLink = (name) => el("a", { href: "#/site/" + encodeURIComponent(name), "data-site-link": name }, name || "(no site)");
  // A cell, its label shown when a phone stacks the row as a card.
  const td = (label, ...kids) => el("td", { "data-label": label }, el("span", {}, ...kids));

  function pager(box, pg, unit, go) {
    const pages = Math.max(1, Math.ceil(pg.total / pg.per_page));
    box.replaceChildren(
      el("button", { type: "button", class: "prev", disabled: pg.page <= 1, onclick: () => go(pg.page - 1) }, "‹ previous"),
      el("span", { class: "where" }, " page " + pg.page + " of " + pages + " (" + pg.total + " " + unit + ") "),
      el("button", { type: "button", class: "next", disabled: pg.page >= pages, onclick: () => go(pg.page + 1) }, "next ›"));
    box.setAttribute("data-total", String(pg.total));
  }

  // --- the site overview ---------------------------------------------------
  async function refreshSites() {
    const q = new URLSearchParams({ q: $("#site-q").value.trim(), page: view.sitePage, per_page: 25 });
    const pg = await api("GET", "/api/sites?" + q);
    const f = pg.fleet;
    $("#fleet-summary").textContent = f.devices + " devices at " + f.sites + " sites: " + f.online + " online, " + f.offline + " offline, " + f.silent + " silent" +
      (f.serial ? "; fleet policy serial " + f.serial + (f.behind ? ", " + f.behind + " device(s) behind" : ", all on it") : "");
    const tb = $("#sites tbody");
    tb.replaceChildren(...pg.sites.map((s) => {
      const serials = s.serials.map((x) => x.serial + (s.same_serial ? "" : " ×" + x.devices)).join(", ");
      return el("tr", { "data-site": s.site, "data-online": String(s.online), "data-offline": String(s.offline), "data-denied-rate": String(s.rates.denied), "data-same-serial": String(s.same_serial) },
        td("Site", siteLink(s.site)),
        td("Devices", s.devices + " (" + s.routers + " routers, " + s.relays + " relays)"),
        td("Health", el("span", { class: "online" }, s.online + " online"), s.offline ? el("span", { class: "offline" }, " " + s.offline + " offline") : null,
          s.silent ? el("span", { class: "offline" }, " " + s.silent + " silent") : null),
        td("Policy", el("span", { class: s.current ? "" : "warn" }, serials + (s.same_serial ? (s.current ? " (current)" : " (not the fleet's)") : " (mixed)"))),
        td("Passed", rate(s.rates.passed)), td("Denied", rate(s.rates.denied)),
        td("Feeds", ...s.feeds.map((x) => el("div", { class: x.cap_w > 0 && x.power_w > x.cap_w ? "warn" : "" }, x.id + ": " + kw(x.power_w) + (x.cap_w > 0 ? " / cap " + kw(x.cap_w) : " (no cap)"))),
          s.feeds_total > s.feeds.length ? el("div", { class: "empty" }, "and " + (s.feeds_total - s.feeds.length) + " more") : null));
    }));
    if (!pg.sites.length) tb.append(el("tr", { class: "empty" }, el("td", { colSpan: 7 }, pg.total ? "" : "No site matches.")));
    pager($("#sites-pager"), pg, "sites", (n) => { view.sitePage = n; refreshSites(); });
  }

  // --- devices: all of them, or a site's -----------------------------------
  async function refreshDevices() {
    const q = new URLSearchParams({ q: $("#dev-q").value.trim(), state: $("#dev-state").value, page: view.devPage, per_page: 25 });
    if (view.site) q.set("site", view.site);
    const pg = await api("GET", "/api/devices?" + q);
    const tb = $("#fleet tbody");
    tb.replaceChildren(...pg.devices.map((d) => {
      const r = d.rates;
      const tr = el("tr", { "data-device": d.id, "data-online": String(d.state === "online"), "data-state": d.state, "data-serial": String(d.policy_serial) },
        td("Device", d.id), td("Site", siteLink(d.site || "")), td("Kind", d.kind || ""),
        el("td", { "data-label": "State", class: "state " + (d.state === "online" ? "online" : "offline"), title: d.state === "silent" ? "its last state says online, but nothing has come from it for too long" : "" }, d.state),
        td("Policy", el("span", { class: "serial" }, d.policy_serial || "none"), " ", el("span", { class: "empty" }, d.policy_expires ? "until " + fmtTime(d.policy_expires) : "")),
        td("Passed", r ? rate(r.passed) : ""), td("Denied", r ? el("span", { class: "denied" }, rate(r.denied)) : ""),
        td("Approvals / feeds", (d.approvals || []).join(", ") || (d.feeds || []).map((f) => f.id + " " + kw(f.power_w)).join(", ")),
        td("", el("button", { type: "button", "data-rebirth": d.id, disabled: !can("technician"), onclick: () => command(d.id, "rebirth", null, "Rebirth " + d.id + "?") }, "rebirth")));
      if (r) tr.setAttribute("data-denied-rate", String(r.denied));
      return tr;
    }));
    if (!pg.devices.length) tb.append(el("tr", { class: "empty" }, el("td", { colSpan: 9 }, pg.total ? "" : "No device matches.")));
    pager($("#devices-pager"), pg, "devices", (n) => { view.devPage = n; refreshDevices(); });
    return pg.devices;
  }

  // --- a site's page: its traffic and its feeds, from the store ----------
  let chartsAt = 0;
  async function refreshSite(devs) {
    const site = view.site;
    const routers = devs.filter((d) => d.kind === "router").length;
    const up = devs.filter((d) => d.state === "online").length;
    $("#site-summary").textContent = devs.length + " device(s) on this page, " + up + " online, " + routers + " router(s)";
    if (Date.now() - chartsAt < 4000) return; // a minute's rollup moves slowly
    chartsAt = Date.now();
    const to = Date.now();
    const series = (p) => api("GET", "/api/series?" + new URLSearchParams(Object.assign({ since: "1h" }, p)));
    // Traffic: passed and denied per second over the last hour.
    const box = $("#traffic");
    let div = box.querySelector(".traffic");
    if (!div) box.append(div = el("div", { class: "traffic", "data-site": site }, el("h3", {}, "Traffic (per second, 1-minute rollups)"), el("canvas", { width: 420, height: 160 }), el("div", { class: "figures" })));
    const [passed, denied] = await Promise.all([series({ site, series: "links.passed" }), series({ site, series: "links.denied" })]);
    if (view.site !== site) return;
    const from = span(to, [passed, denied]);
    const sum = (s) => s.points.reduce((n, p) => n + p.v * s.res_s, 0);
    // The minute under way holds only its first seconds: its rate is over
    // those, not over the whole minute.
    const sofar = (s) => s.points.map((p) => (p.t + s.res_s * 1000 > to ? Object.assign({}, p, { v: (p.v * s.res_s * 1000) / Math.max(5000, to - p.t) }) : p));
    const [pp, dp] = [sofar(passed), sofar(denied)], last = (ps) => (ps.length ? ps[ps.length - 1].v : 0);
    chart($("canvas", div), from, to, [{ name: "passed", color: "#1f6feb", points: pp }, { name: "denied", color: "#d1242f", points: dp }], rate);
    div.setAttribute("data-points", String(passed.points.length + denied.points.length));
    div.setAttribute("data-passed-total", String(sum(passed)));
    div.setAttribute("data-denied-total", String(sum(denied)));
    $(".figures", div).textContent = "this minute: passed " + rate(last(pp)) + ", denied " + rate(last(dp)) +
      "; last hour: " + Math.round(sum(passed)) + " passed, " + Math.round(sum(denied)) + " denied";
    await refreshFeeds(devs, to, series);
  }

  // span is where a chart's time axis starts: the last hour, or the last
  // 15 minutes while the store holds no more (a new site, a new feed).
  function span(to, all) {
    const first = Math.min(...all.map((s) => (s.points.length ? s.points[0].t : to)));
    return first > to - 14 * MINUTE ? to - 15 * MINUTE : to - HOUR;
  }

  async function refreshFeeds(devs, to, series) {
    const box = $("#feeds");
    const feeds = [];
    for (const d of devs) for (const f of d.feeds || []) feeds.push([d, f]);
    if (!feeds.length) { box.replaceChildren(el("p", { class: "empty" }, "No relay controller of this page has reported a feed.")); return; }
    box.querySelector(".empty")?.remove();
    const keep = new Set();
    for (const [d, f] of feeds) {
      const key = d.id + "/" + f.id;
      keep.add(key);
      let div = box.querySelector('.feed[data-key="' + CSS.escape(key) + '"]');
      if (!div) {
        const cap = el("input", { type: "number", min: "0.1", step: "0.1", placeholder: "cap kW", class: "cap-input" });
        div = el("div", { class: "feed", "data-key": key, "data-device": d.id, "data-feed": f.id },
          el("h3", {}, f.id + " @ " + d.id),
          el("canvas", { class: "power", width: 420, height: 160, title: "power against cap (1-minute means, the band their extremes)" }),
          el("canvas", { class: "ops", width: 420, height: 90, title: "relay operations in the last hour" }),
          el("div", { class: "figures" }),
          el("div", { class: "circuits" }),
          el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); command(d.id, "throttle.set", { feed: f.id, cap_kw: parseFloat(cap.value) }, "Cap " + f.id + " at " + cap.value + " kW?"); } },
            cap, el("button", { type: "submit", class: "throttle-set", disabled: !can("grid") }, "set throttle"),
            el("button", { type: "button", class: "throttle-clear", disabled: !can("grid"), onclick: () => command(d.id, "throttle.clear", { feed: f.id }, "Clear the throttle of " + f.id + "?") }, "clear")));
        box.append(div);
      }
      div.setAttribute("data-power", String(f.power_w));
      div.setAttribute("data-cap", String(f.cap_w));
      div.setAttribute("data-online", String(d.state === "online"));
      $(".figures", div).textContent = "power " + kw(f.power_w) + (f.cap_w > 0 ? ", cap " + kw(f.cap_w) : ", no cap") + (f.status ? " — " + f.status : "") + (d.state === "online" ? "" : " (device " + d.state + ")");
      $(".circuits", div).replaceChildren(...(f.circuits || []).map((c) =>
        el("span", { class: c.on ? "on" : "off", "data-circuit": c.id }, c.id + (c.protected ? " (protected)" : "") + ": " + (c.on ? "on" : "off"))));
      const p = "feed." + f.id + ".";
      const [power, capS, ops] = await Promise.all(["power_w", "cap_w", "relay_ops_last_hour"].map((n) => series({ device: d.id, series: p + n })));
      const pts = (s) => s.points.map((x) => ({ t: x.t, v: x.v, min: x.min, max: x.max }));
      const from = span(to, [power, capS, ops]);
      chart($("canvas.power", div), from, to, [{ name: "power", color: "#1f6feb", points: pts(power), band: true }, { name: "cap", color: "#d1242f", points: pts(capS), step: true }], kw);
      chart($("canvas.ops", div), from, to, [{ name: "relay ops", color: "#8250df", points: pts(ops), step: true }], (v) => v.toFixed(0));
      const lastCap = capS.points.length ? capS.points[capS.points.length - 1] : null;
      div.setAttribute("data-power-points", String(power.points.length));
      div.setAttribute("data-cap-points", String(capS.points.length));
      div.setAttribute("data-cap-last", lastCap ? String(lastCap.min ?? lastCap.v) : "");
      div.setAttribute("data-ops-points", String(ops.points.length));
    }
    for (const div of box.querySelectorAll(".feed")) if (!keep.has(div.getAttribute("data-key"))) div.remove();
  }

  // --- expiry warnings, from the state -------------------------------------
  function renderWarnings(s) {
    const ul = $("#warnings");
    ul.replaceChildren(...(s.warnings || []).map((w) => el("li", { class: w.expired ? "bad" : "warn", "data-kind": w.kind, "data-subject": w.subject }, w.text)));
    ul.hidden = !ul.children.length;
    ul.setAttribute("data-days", String(s.expiry_warning_days));
  }

  // --- the audit log: who did what, and why -------------------------------
  let auditAt = 0;
  async function refreshAudit(force) {
    if (!force && Date.now() - auditAt < 3000) return;
    auditAt = Date.now();
    const recs = await api("GET", "/api/audit?" + new URLSearchParams({ limit: 30, kind: $("#audit-kind").value }));
    $("#audit tbody").replaceChildren(...recs.reverse().map((r) => {
      const d = r.detail || {};
      const what = [d.action || d.type, d.approval || d.target, d.serial ? "serial " + d.serial : ""].filter(Boolean).join(" ");
      return el("tr", { "data-kind": r.kind, "data-subject": r.subject || "", "data-reason": d.reason || "" },
        td("Time", fmtTime(r.at)), td("Kind", r.kind), td("Operator", r.operator || ""), td("Subject", r.subject || ""), td("What", what),
        td("Reason", d.reason || (d.error ? "error: " + d.error : "")));
    }));
  }

  let lastState = null, busy = false, listsAt = 0;
  async function refresh(s, now) {
    if (s) lastState = s;
    if (!lastState || busy || (!now && Date.now() - listsAt < 2000)) return;
    busy = true;
    try {
      listsAt = Date.now();
      renderWarnings(lastState);
      if (!view.site) await refreshSites();
      const devs = await refreshDevices();
      if (view.site) await refreshSite(devs);
      await refreshAudit(now);
      document.body.setAttribute("data-sites-refreshed", String(Date.now()));
    } finally { busy = false; }
  }
  LG.onRefresh((s) => refresh(s, false));

  document.addEventListener("DOMContentLoaded", () => {
    window.addEventListener("hashchange", route);
    for (const [id, reset] of [["#site-q", () => { view.sitePage = 1; }], ["#dev-q", () => { view.devPage = 1; }], ["#dev-state", () => { view.devPage = 1; }], ["#audit-kind", () => {}]]) {
      $(id).addEventListener("input", () => { reset(); refresh(null, true); });
    }
    for (const f of ["#site-filter", "#device-filter", "#audit-filter"]) $(f).addEventListener("submit", (e) => e.preventDefault());
    route();
  });
})();
