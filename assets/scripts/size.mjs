// Prints the gzip size of what the first page load fetches (the JS and CSS that
// dist/index.html references, plus their static imports) and of every file, and fails
// above the 300 KB budget.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const BUDGET = 300 * 1024;
const html = readFileSync(join(dist, 'index.html'), 'utf8');

const gz = (path) => gzipSync(readFileSync(path), { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

// Entry files from index.html, then static `import … from "./x.js"` chains.
const first = new Set();
const queue = [...html.matchAll(/(?:src|href)="\/?(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
while (queue.length) {
  const file = queue.pop();
  if (first.has(file)) continue;
  first.add(file);
  if (file.endsWith('.js')) {
    const code = readFileSync(join(dist, file), 'utf8');
    for (const m of code.matchAll(/(?:^|[;\s}])import\s*(?:[\w*${}\s,]+from\s*)?["']\.\/([^"']+\.js)["']/g)) {
      queue.push(`assets/${m[1]}`);
    }
  }
}

let firstTotal = 0;
console.log('first load (gzip -9):');
for (const f of [...first].sort()) {
  const size = gz(join(dist, f));
  firstTotal += size;
  console.log(`  ${f.padEnd(44)} ${kb(statSync(join(dist, f)).size).padStart(10)} raw ${kb(size).padStart(10)} gzip`);
}
console.log(`  ${'total'.padEnd(44)} ${''.padStart(14)} ${kb(firstTotal).padStart(10)} gzip (budget ${kb(BUDGET)})`);

const all = readdirSync(join(dist, 'assets')).filter((f) => /\.(js|css)$/.test(f));
const allTotal = all.reduce((n, f) => n + gz(join(dist, 'assets', f)), 0);
console.log(`all JS+CSS in dist (incl. lazy chunks): ${kb(allTotal)} gzip in ${all.length} files`);

if (firstTotal > BUDGET) {
  console.error(`over budget: ${kb(firstTotal)} > ${kb(BUDGET)}`);
  process.exit(1);
}
