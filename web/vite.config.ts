/**
 * The page's build: Vite, with the page in web/, the library's sources imported from ../src, and the default model
 * (models/shapes) served and bundled as the page's own files with a manifest.json listing them. The headers make
 * the page cross-origin isolated, which lets ONNX Runtime Web use WebAssembly threads.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { defineConfig, type Plugin } from 'vite';

const here = import.meta.dirname;
const MODEL_DIR = resolve(here, '../models/shapes');
const MODEL_URL = 'models/shapes';

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : [],
  );
}

function modelFiles(): { path: string; size: number; abs: string }[] {
  return walk(MODEL_DIR)
    .map((abs) => ({ abs, path: relative(MODEL_DIR, abs).split('\\').join('/'), size: statSync(abs).size }))
    .sort((a, b) => a.path.localeCompare(b.path));
}

const manifest = () => JSON.stringify({ files: modelFiles().map(({ path, size }) => ({ path, size })) });

/** models/shapes as the page's files: served by the dev server, copied into the build. */
function defaultModel(): Plugin {
  return {
    name: 's2i-default-model',
    configureServer(server) {
      server.middlewares.use(`/${MODEL_URL}/`, (req, res, next) => {
        const path = decodeURIComponent((req.url ?? '').split('?')[0]!.replace(/^\//, ''));
        if (path === 'manifest.json') {
          res.setHeader('Content-Type', 'application/json');
          res.end(manifest());
          return;
        }
        const file = modelFiles().find((f) => f.path === path);
        if (!file) return next();
        res.setHeader('Content-Type', 'application/octet-stream');
        res.end(readFileSync(file.abs));
      });
    },
    generateBundle() {
      for (const f of modelFiles())
        this.emitFile({ type: 'asset', fileName: `${MODEL_URL}/${f.path}`, source: readFileSync(f.abs) });
      this.emitFile({ type: 'asset', fileName: `${MODEL_URL}/manifest.json`, source: manifest() });
    },
  };
}

export default defineConfig({
  root: here,
  base: './',
  plugins: [defaultModel()],
  build: {
    outDir: resolve(here, 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
  },
  worker: { format: 'es' },
  server: { headers: ISOLATION_HEADERS },
  preview: { headers: ISOLATION_HEADERS },
});
