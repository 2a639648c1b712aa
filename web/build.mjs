// Builds the third-party browser files taxi serves, into ../taxi/web/vendor/ (committed):
//   graphiql.js + graphiql.css  GraphiQL 3 with React 18 and our fetcher (src/graphiql.jsx)
//   graphql-ws.js               the graphql-ws client as an ES module, for /app/
// Rebuild: `cd web && npm ci && npm run build`. Versions are pinned in package-lock.json.
import { build } from "esbuild";

const out = new URL("../taxi/web/vendor/", import.meta.url).pathname;
const common = {
  bundle: true,
  minify: true,
  legalComments: "linked",
  target: ["es2020"],
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "info",
};

await build({
  ...common,
  entryPoints: { graphiql: "src/graphiql.jsx" },
  outdir: out,
  format: "iife",
  jsx: "automatic",
  loader: { ".woff": "dataurl", ".woff2": "dataurl", ".svg": "dataurl" },
});
await build({
  ...common,
  entryPoints: { "graphql-ws": "src/graphql-ws.js" },
  outdir: out,
  format: "esm",
});
