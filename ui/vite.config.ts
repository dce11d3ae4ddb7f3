/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// The desktop app loads ui/dist (tauri build) or this dev server (tauri dev, port 5173).
export default defineConfig({
  plugins: [svelte()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { target: "safari16", sourcemap: false },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
