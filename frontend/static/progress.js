// Live progress for queued and running audits: polls the API, reloads when one finishes.
(function () {
  "use strict";
  var FINAL = ["succeeded", "failed", "cancelled"];
  var active = Array.prototype.slice.call(document.querySelectorAll("[data-active][data-audit]"));
  if (!active.length) {
    return;
  }
  function update(element, audit) {
    var scope = element.hasAttribute("data-reload") ? document : element;
    var bar = scope.querySelector("[data-progress] progress");
    var text = scope.querySelector("[data-progress-text]");
    var badge = element.querySelector("[data-status]");
    if (bar) {
      bar.max = Math.max(audit.progress.total, 1);
      bar.value = audit.progress.done;
    }
    if (text) {
      text.textContent = audit.progress.done.toLocaleString() + " / " + audit.progress.total.toLocaleString();
    }
    if (badge) {
      badge.textContent = audit.status;
      badge.className = "status status-" + audit.status;
    }
  }
  function poll() {
    var requests = active.map(function (element) {
      return fetch("/v1/audits/" + encodeURIComponent(element.dataset.audit), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (audit) {
          if (!audit) {
            return false;
          }
          update(element, audit);
          return FINAL.indexOf(audit.status) >= 0;
        })
        .catch(function () { return false; });
    });
    Promise.all(requests).then(function (finished) {
      if (finished.some(Boolean)) {
        window.location.reload();
      } else {
        window.setTimeout(poll, 2000);
      }
    });
  }
  window.setTimeout(poll, 1500);
})();
