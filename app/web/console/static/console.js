// Live updates by polling: every few seconds the page asks for its own URL with
// X-Console-Live: 1 and swaps in the #live region. No framework, no build step.
// It waits while the tab is hidden or while focus or typing is inside the region, so a
// keyboard user never loses their place; an expired session reloads to the login page.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var seconds = parseInt(live.getAttribute("data-poll"), 10) || 5;
  var busy = false;
  function refresh() {
    if (busy || document.hidden || live.contains(document.activeElement)) { return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Console-Live": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined && !live.contains(document.activeElement)) {
          live.innerHTML = html;
          live.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the daemon restarting: try again next time */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, seconds * 1000);
})();
