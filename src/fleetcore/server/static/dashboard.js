// The dashboard's only script, served by the server itself (no CDN): it
// keeps the page current without a reload and shows times relative to now.
// Without it the pages still work; they only do not refresh by themselves.
(function () {
  "use strict";
  // The server says how often (`server run --page-refresh`).
  var REFRESH_MS = Number(document.body.dataset.refreshMs) || 10000;
  var serverNow = Date.parse(document.body.dataset.now || "");
  // The server's clock decides what "now" is; the browser's may be off.
  var offset = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function ago(stamp) {
    var seconds = Math.round((Date.now() + offset - Date.parse(stamp)) / 1000);
    var ahead = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 5) return "just now";
    var units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][1]) {
        var n = Math.floor(seconds / units[i][1]);
        var text = n + " " + units[i][0] + (n === 1 ? "" : "s");
        return ahead ? "in " + text : text + " ago";
      }
    }
    return "just now";
  }

  function relativeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (!isNaN(Date.parse(el.getAttribute("datetime")))) el.textContent = ago(el.getAttribute("datetime"));
    });
  }

  function busy(section) {
    // Never replace what someone is typing into.
    var active = document.activeElement;
    if (active && section.contains(active) && active.tagName !== "BODY") return true;
    return Array.prototype.some.call(section.querySelectorAll("input[type=text], input:not([type])"), function (i) {
      return i.value !== i.defaultValue;
    });
  }

  function refresh() {
    if (document.hidden) return;
    fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "refresh" } })
      .then(function (response) {
        if (!response.ok || response.redirected) return null;
        return response.text();
      })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var now = Date.parse(fresh.body.dataset.now || "");
        if (!isNaN(now)) offset = now - Date.now();
        document.querySelectorAll("[data-live][id]").forEach(function (section) {
          var next = fresh.getElementById(section.id);
          if (next && !busy(section) && next.innerHTML !== section.innerHTML) section.innerHTML = next.innerHTML;
        });
        document.body.dataset.refreshed = String(Date.now());
        relativeTimes(document);
      })
      .catch(function () { /* the server may be restarting: try again later */ });
  }

  relativeTimes(document);
  setInterval(function () { relativeTimes(document); }, 5000);
  setInterval(refresh, REFRESH_MS);
})();
