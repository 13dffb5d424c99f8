// The Uppy module (uppy/dropfile-uppy.ts) as one self-contained ES module,
// dist/uppy/dropfile-uppy.js, served by the gateway at /uppy/dropfile-uppy.js: a page imports
// that one URL, whatever else it serves (README: "Use Dropfile from Uppy"). Runs after the
// app's build (vite.config.ts), which empties dist/.
import { defineConfig } from "vite";

export default defineConfig({
  publicDir: false,
  build: {
    outDir: "dist/uppy",
    emptyOutDir: false,
    target: "es2022",
    lib: {
      entry: "uppy/dropfile-uppy.ts",
      formats: ["es"],
      fileName: () => "dropfile-uppy.js",
    },
  },
});
