// Builds the app into dist/, which the gateway serves at `/`. `npm run dev` proxies the API
// to a gateway (DROPFILE_GATEWAY, default http://127.0.0.1:8080) so that pages and API share
// one origin, as in production: the session cookies are SameSite=Strict.
//
// Two pages: the app (index.html) and the Uppy example (examples/uppy/, served at
// /examples/uppy). The Uppy module itself is built on its own, self-contained, by
// vite.uppy.config.ts (to dist/uppy/dropfile-uppy.js); the example imports it by name, which
// the build leaves an import of the served file, as on any page that uses it, and the dev
// server takes from source.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const gateway = process.env.DROPFILE_GATEWAY ?? "http://127.0.0.1:8080";
const UPPY_MODULE = "@dropfile/uppy"; // tsconfig.json's paths give it its types
const UPPY_MODULE_URL = "/uppy/dropfile-uppy.js";
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig(({ command }) => ({
  resolve: command === "serve" ? { alias: { [UPPY_MODULE]: here("uppy/dropfile-uppy.ts") } } : {},
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    rolldownOptions: {
      input: { main: here("index.html"), "examples/uppy": here("examples/uppy/index.html") },
      external: [UPPY_MODULE],
      output: { paths: { [UPPY_MODULE]: UPPY_MODULE_URL } },
    },
  },
  server: {
    host: "127.0.0.1",
    proxy: { "/api": { target: gateway, changeOrigin: false } },
  },
}));
