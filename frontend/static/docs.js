// Starts Swagger UI from files served by memaudit itself (no CDN, no inline script).
(function () {
  "use strict";
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The browser's session authenticates reads; a Bearer key can be given under Authorize.
    withCredentials: true,
  });
})();
