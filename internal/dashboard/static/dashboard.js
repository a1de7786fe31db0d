// jobd dashboard: keep the page current without reloading it, and filter
// the instances as one types. The server renders and escapes everything;
// this only swaps in the server's HTML for the live part of the page.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseInt(document.body.getAttribute("data-refresh"), 10) || 2000;
  var conn = document.getElementById("conn");
  var q = document.getElementById("q");
  var timer = null;

  // filter hides the instance rows whose name does not contain the query.
  function filter() {
    if (!q) { return; }
    var want = q.value.trim().toLowerCase();
    var rows = live.querySelectorAll("#instances tr[data-name]");
    for (var i = 0; i < rows.length; i++) {
      var name = rows[i].getAttribute("data-name").toLowerCase();
      rows[i].hidden = want !== "" && name.indexOf(want) < 0;
    }
  }

  function schedule(ms) {
    if (timer !== null) { clearTimeout(timer); }
    timer = setTimeout(refresh, ms);
  }

  // refresh fetches the live part of this very page (same path and query).
  function refresh() {
    timer = null;
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    fetch(url, { cache: "no-store", credentials: "same-origin" })
      .then(function (resp) { return resp.text(); })
      .then(function (html) {
        live.innerHTML = html;
        filter();
        conn.hidden = true;
      })
      .catch(function (err) {
        conn.textContent = "Dashboard unreachable: " + err.message + " (retrying)";
        conn.hidden = false;
      })
      .then(function () { if (timer === null) { schedule(every); } });
  }

  if (q) {
    q.addEventListener("input", function () {
      var url = new URL(window.location.href);
      if (q.value.trim() === "") { url.searchParams.delete("q"); } else { url.searchParams.set("q", q.value.trim()); }
      window.history.replaceState(null, "", url);
      filter();
      schedule(300);
    });
  }
  schedule(every);
})();
