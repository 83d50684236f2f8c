// Checks that the build obeys the daemon's CSP (script-src 'self'; style-src 'self'):
// no inline scripts or styles in index.html, no style attributes, no external URLs,
// and hashed file names under dist/assets/.
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const problems = [];

for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
  if (!/\bsrc=/.test(m[1])) problems.push('inline <script> in index.html');
  else if (m[2].trim()) problems.push('<script src> with inline content');
}
if (/<style\b/i.test(html)) problems.push('inline <style> in index.html');
if (/\sstyle\s*=/i.test(html)) problems.push('style="" attribute in index.html');
if (/\son[a-z]+\s*=/i.test(html)) problems.push('inline event handler attribute in index.html');
for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
  if (/^(https?:)?\/\//.test(m[1])) problems.push(`external URL in index.html: ${m[1]}`);
}
const assets = readdirSync(join(dist, 'assets'));
if (!assets.some((f) => f.endsWith('.js'))) problems.push('no JS in dist/assets');
for (const f of assets) {
  if (!/-[A-Za-z0-9_-]{8,}\.\w+$/.test(f)) problems.push(`file name without a content hash: assets/${f}`);
}
for (const f of assets.filter((f) => f.endsWith('.css'))) {
  const css = readFileSync(join(dist, 'assets', f), 'utf8');
  if (/@import\s+url\(\s*['"]?https?:/i.test(css) || /url\(\s*['"]?https?:/i.test(css)) problems.push(`external URL in ${f}`);
}

if (problems.length) {
  console.error(`dist/ breaks the CSP rules:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`dist/ ok: index.html has no inline scripts or styles; ${assets.length} hashed files in dist/assets`);
