// SageVault console: the one script (progressive enhancement; every page works without it).
// Each <time datetime="...Z"> the server rendered in UTC also shows the reader's local time.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime()) || el.nextElementSibling && el.nextElementSibling.classList.contains("local")) {
      return;
    }
    var local = document.createElement("span");
    local.className = "local";
    local.textContent = " (" + fmt.format(at) + " local)";
    el.after(local);
  });
});
