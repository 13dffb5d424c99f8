// Builds the app into dist/, which the gateway serves at `/`. `npm run dev` proxies the API
// to a gateway (DROPFILE_GATEWAY, default http://127.0.0.1:8080) so that pages and API share
// one origin, as in production: the session cookies are SameSite=Strict.
//
// Three entries: the app (index.html), the Uppy example page (examples/uppy/, served at
// /examples/uppy), and the Uppy module (uppy/dropfile-uppy.ts), built to a stable name,
// /uppy/dropfile-uppy.js, with its exports kept, for pages to import.
import { resolve } from "node:path";
import { defineConfig } from "vite";

const gateway = process.env.DROPFILE_GATEWAY ?? "http://127.0.0.1:8080";
const UPPY_MODULE = "dropfile-uppy";

export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    rolldownOptions: {
      input: {
        main: resolve(import.meta.dirname, "index.html"),
        "examples/uppy": resolve(import.meta.dirname, "examples/uppy/index.html"),
        [UPPY_MODULE]: resolve(import.meta.dirname, "uppy/dropfile-uppy.ts"),
      },
      // A page's entry exports nothing; the module's exports are its API.
      preserveEntrySignatures: "exports-only",
      output: {
        entryFileNames: (chunk) =>
          chunk.name === UPPY_MODULE ? `uppy/${UPPY_MODULE}.js` : "assets/[name]-[hash].js",
      },
    },
  },
  server: {
    host: "127.0.0.1",
    proxy: { "/api": { target: gateway, changeOrigin: false } },
  },
});
