/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The daemon embeds dist/ and serves it at `/` under a strict CSP
// (script-src 'self'; style-src 'self'), so the build must not inline anything.
export default defineConfig({
  plugins: [preact()],
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    // Never inline assets as data: URLs into CSS/JS (fonts/images stay files).
    assetsInlineLimit: 0,
    // The polyfill is an inline-free module, but modern browsers do not need it.
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` against a local daemon: APPLIANCE_URL=http://127.0.0.1:8470
    proxy: Object.fromEntries(
      ['/api', '/v1', '/readyz', '/healthz'].map((p) => [
        p,
        { target: process.env.APPLIANCE_URL ?? 'http://127.0.0.1:8470', changeOrigin: false },
      ]),
    ),
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
