// /docs: Swagger UI on this server's OpenAPI document. A file rather than an inline script, so
// the Content-Security-Policy (script-src 'self') runs it; the document's URL comes from the
// page (data-openapi on #swagger-ui).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    tryItOutEnabled: true,
    displayOperationId: true,
    validatorUrl: null  // no badge from an outside validator: the page works offline
  });
}());
