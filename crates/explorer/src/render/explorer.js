// Umbra explorer: progressive enhancement only. Every page works without this file: tables
// sort through links (?sort=…&dir=…) and the page refreshes itself at the epoch's end.
"use strict";
(function () {
  // sort a table in place when a column's link is clicked, by each cell's data-value
  document.querySelectorAll("table[data-sortable]").forEach(function (table) {
    table.querySelectorAll("th a[data-sort]").forEach(function (link, column) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var index = Array.prototype.indexOf.call(link.closest("tr").children, link.closest("th"));
        var ascending = link.getAttribute("aria-sort") === "descending" ||
          (link.getAttribute("aria-sort") === null && link.dataset.first === "asc");
        table.querySelectorAll("th a[data-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
        link.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[index].dataset.value, y = b.cells[index].dataset.value;
          var nx = Number(x), ny = Number(y), order;
          if (x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny)) { order = nx - ny; }
          else { order = String(x).localeCompare(String(y)); }
          if (order === 0) { order = Number(a.dataset.id) - Number(b.dataset.id); return order; }
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        if (window.history && history.replaceState) {
          var url = new URL(link.href, location.href);
          history.replaceState(null, "", url.pathname + url.search);
        }
      });
    });
  });
  // the epoch's countdown
  var clock = document.querySelector("[data-ends-ms]");
  if (clock) {
    var ends = Number(clock.dataset.endsMs), offset = Number(clock.dataset.nowMs) - Date.now();
    var tick = function () {
      var left = Math.max(0, Math.round((ends - (Date.now() + offset)) / 1000));
      clock.textContent = left >= 60 ? Math.floor(left / 60) + " min " + (left % 60) + " s" : left + " s";
    };
    tick();
    setInterval(tick, 1000);
  }
})();
