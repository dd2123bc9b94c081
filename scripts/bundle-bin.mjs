/**
 * Bundles the `agora` command into one file (dist/bin/agora.js, over tsc's output).
 *
 * Loaded as ~690 separate ES modules, `agora --version` took 1.0–1.2 s and a server 1.9 s to
 * listen (Node 20 has no module compile cache); bundled, 0.4 s and 1.2 s (bench/NOTES.md).
 * The library (dist/index.js) stays unbundled. Native addons stay outside, loaded through
 * `require` as their packages expect.
 */
import { build } from "esbuild"

await build({
  entryPoints: ["dist/bin/agora.js"],
  outfile: "dist/bin/agora.js",
  allowOverwrite: true,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["better-sqlite3", "msgpackr-extract"],
  banner: {
    js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);'
  },
  sourcemap: true,
  logLevel: "warning"
})
