/**
 * `GET /v1/docs`: a human-readable reference of the OpenAPI document, bundled with the
 * server (no CDN, no renderer dependency): one page whose script fetches
 * `/v1/openapi.json` and lists each operation with its parameters, body and answers.
 * Everything from the document is inserted as text, never as HTML.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

const SCRIPT = `
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
const json = (v) => el('pre', JSON.stringify(v, null, 2));
const fold = (label, v) => { const d = el('details'); d.append(el('summary', label), json(v)); return d; };
function resolve(doc, s) {
  if (s && s.$ref) return doc.components.schemas[s.$ref.split('/').pop()];
  return s;
}
// Relative, for a server behind a path prefix; from /v1/docs/ too (routing is not strict), where it would miss.
fetch(new URL('openapi.json', location.origin + location.pathname.replace(/\\/+$/, ''))).then((r) => r.json()).then((doc) => {
  const main = document.querySelector('main');
  document.title = doc.info.title + ' API ' + doc.info.version;
  main.append(el('h1', document.title), el('p', doc.info.description || ''));
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const sec = el('section');
      sec.id = op.operationId;
      const h = el('h2');
      h.append(el('span', method.toUpperCase(), 'method ' + method), el('code', ' ' + path), el('small', ' ' + op.operationId + (op.security && op.security.length === 0 ? ' (no credentials)' : '')));
      sec.append(h, el('p', op.summary || ''));
      for (const p of op.parameters || []) sec.append(fold(p.in + ' parameter ' + p.name + (p.required ? ' (required)' : ''), p.schema));
      if (op.requestBody) {
        const media = op.requestBody.content['application/json'];
        sec.append(fold('request body', media.schema));
        if (media.example !== undefined) sec.append(fold('example request body', media.example));
      }
      const ul = el('ul');
      for (const [status, res] of Object.entries(op.responses)) {
        const li = el('li');
        li.append(el('b', status + ' '), el('span', res.description));
        for (const [type, media] of Object.entries(res.content || {})) li.append(fold(type, resolve(doc, media.schema)));
        ul.append(li);
      }
      sec.append(ul);
      main.append(sec);
    }
  }
}).catch((err) => { document.querySelector('main').append(el('p', 'Could not load openapi.json: ' + err)); });
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API reference</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 62rem; padding: 1rem; color: #222; }
section { border-top: 1px solid #ddd; padding: .5rem 0; }
h2 { font-size: 1.05rem; } h2 small { color: #777; font-weight: normal; }
.method { display: inline-block; min-width: 4.5rem; font-family: monospace; }
.get { color: #1565c0; } .post { color: #2e7d32; } .patch { color: #ef6c00; } .delete { color: #c62828; }
pre { background: #f6f6f6; padding: .5rem; overflow: auto; font-size: 12px; }
summary { cursor: pointer; color: #444; }
</style>
</head>
<body>
<main><noscript>This page renders /v1/openapi.json with JavaScript; the JSON document itself is at <a href="openapi.json">openapi.json</a>.</noscript></main>
<script>${SCRIPT}</script>
</body>
</html>
`;

export function docsPage(_request: FastifyRequest, reply: FastifyReply): void {
  void reply.type('text/html; charset=utf-8').send(PAGE);
}
