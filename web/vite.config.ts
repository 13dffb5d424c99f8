// Builds the app into dist/, which the gateway serves at `/`. `npm run dev` proxies the API
// to a gateway (DROPFILE_GATEWAY, default http://127.0.0.1:8080) so that pages and API share
// one origin, as in production: the session cookies are SameSite=Strict.
import { defineConfig } from "vite";

const gateway = process.env.DROPFILE_GATEWAY ?? "http://127.0.0.1:8080";

export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  server: {
    host: "127.0.0.1",
    proxy: { "/api": { target: gateway, changeOrigin: false } },
  },
});
