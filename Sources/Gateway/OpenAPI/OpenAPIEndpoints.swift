import Foundation
import Hummingbird
import NIOCore
import QuizwireProtos

/// `GET /openapi.json` and `GET /docs`: the document is built once when the gateway starts
/// (a route table it can't describe stops the start, like one it can't load), and both are
/// answered from memory with `X-Request-Id` like every other response.
struct OpenAPIEndpoints: Sendable {
  let document: ByteBuffer
  let page: ByteBuffer

  init(routes: RouteTable, descriptorSet: Data = MethodCatalogue.descriptorSet) throws {
    self.document = ByteBuffer(bytes: try OpenAPIDocument.build(routes: routes, descriptorSet: descriptorSet))
    self.page = ByteBuffer(string: DocsPage.html)
  }

  /// The answer for `verb path` when it is one of these two, else nil (the API routes follow).
  func response(verb: String, path: String, requestID: String) -> Response? {
    guard verb == "GET" || verb == "HEAD" else { return nil }
    let (body, type): (ByteBuffer, String)
    switch path {
    case "/openapi.json": (body, type) = (self.document, "application/json")
    case "/docs", "/docs/": (body, type) = (self.page, "text/html; charset=utf-8")
    default: return nil
    }
    let headers: HTTPFields = [GatewayResponder.requestIDHeader: requestID, .contentType: type]
    return Response(status: .ok, headers: headers, body: verb == "HEAD" ? .init() : .init(byteBuffer: body))
  }
}

/// A small self-contained page that renders /openapi.json: no CDN and no vendored UI bundle,
/// so it works offline and behind a strict network. It lists every operation (parameters,
/// body, responses) and every schema, with `$ref`s as links.
enum DocsPage {
  static let html = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <title>Quizwire API</title>
    <style>
    body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
    code, pre { font: 13px ui-monospace, monospace; }
    .op { border: 1px solid #ddd; border-radius: 6px; margin: .6rem 0; padding: .4rem .8rem; }
    .verb { display: inline-block; min-width: 4.5rem; font-weight: bold; }
    .get { color: #0a6; } .post { color: #06c; } .patch { color: #b70; } .put { color: #b70; } .delete { color: #c22; }
    table { border-collapse: collapse; margin: .3rem 0; } td, th { border-bottom: 1px solid #eee; padding: 2px 10px 2px 0; text-align: left; }
    details > summary { cursor: pointer; }
    </style>
    </head>
    <body>
    <h1 id="title">Quizwire API</h1>
    <p id="about"></p>
    <p>The raw document: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
    <h2>Operations</h2>
    <div id="operations">Loading…</div>
    <h2>Schemas</h2>
    <div id="schemas"></div>
    <script>
    "use strict";
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
    const refName = (ref) => ref.split("/").pop();
    function type(schema) {
      if (!schema) return "any";
      if (schema.$ref) {
        const name = refName(schema.$ref);
        return schema.$ref.includes("/schemas/") ? `<a href="#schema-${esc(name)}">${esc(name)}</a>` : esc(name);
      }
      if (schema.allOf) return schema.allOf.map(type).join(" &amp; ");
      if (schema.type === "array") return `${type(schema.items)}[]`;
      if (schema.enum) return schema.enum.map(esc).join(" | ");
      if (schema.type === "object" && schema.additionalProperties && schema.additionalProperties !== true) {
        return `map&lt;string, ${type(schema.additionalProperties)}&gt;`;
      }
      const t = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
      return esc(t) + (schema.format ? ` <small>(${esc(schema.format)})</small>` : "");
    }
    function properties(schema) {
      const rows = Object.entries(schema.properties || {}).map(([name, s]) => `<tr><td><code>${esc(name)}</code></td><td>${type(s)}</td></tr>`);
      return rows.length ? `<table>${rows.join("")}</table>` : "";
    }
    function operation(path, verb, op) {
      const params = (op.parameters || []).map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${type(p.schema)}</td></tr>`);
      const body = op.requestBody ? `<p>Body: ${type(op.requestBody.content["application/json"].schema)}</p>` : "";
      const responses = Object.entries(op.responses).map(([status, r]) => {
        const schema = r.content && r.content["application/json"] && r.content["application/json"].schema;
        const data = schema && schema.properties ? type(schema.properties.data) : r.$ref ? type(r) : schema ? type(schema) : "no body";
        return `<tr><td>${esc(status)}</td><td>${data}</td></tr>`;
      });
      return `<div class="op"><details><summary><span class="verb ${esc(verb)}">${esc(verb.toUpperCase())}</span><code>${esc(path)}</code>
        — ${esc(op.summary || "")}</summary>
        ${params.length ? `<table><tr><th>parameter</th><th>in</th><th>type</th></tr>${params.join("")}</table>` : ""}
        ${body}<table><tr><th>status</th><th>data</th></tr>${responses.join("")}</table></details></div>`;
    }
    fetch("/openapi.json")
      .then((r) => r.json())
      .then((doc) => {
        document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
        document.getElementById("about").textContent = doc.info.description || "";
        const ops = [];
        for (const [path, item] of Object.entries(doc.paths)) {
          for (const [verb, op] of Object.entries(item)) ops.push(operation(path, verb, op));
        }
        document.getElementById("operations").innerHTML = ops.join("");
        document.getElementById("schemas").innerHTML = Object.entries(doc.components.schemas)
          .map(([name, s]) => `<h3 id="schema-${esc(name)}"><code>${esc(name)}</code></h3><p>${type(s.properties ? { type: s.type } : s)}
            ${esc(s.description || "")}</p>${properties(s)}`)
          .join("");
      })
      .catch((e) => { document.getElementById("operations").textContent = `Could not load /openapi.json: ${e}`; });
    </script>
    </body>
    </html>

    """
}
