// /docs: start Swagger UI (vendored) on the app's own OpenAPI schema. A file, not an inline
// script, so the page runs under the same Content-Security-Policy as the rest of the app.
/* global SwaggerUIBundle */
const root = document.getElementById('swagger-ui');
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: '#swagger-ui',
  layout: 'BaseLayout',
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
