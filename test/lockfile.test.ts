import t from 'tap';
import { readFileSync } from 'node:fs';

t.test('every optional dependency in package-lock.json has an entry, so `npm ci` accepts the lock', async (t) => {
  const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8')) as { packages: Record<string, { optionalDependencies?: Record<string, string> }> };
  const missing: string[] = [];
  for (const [key, pkg] of Object.entries(lock.packages)) {
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) {
      const base = key === '' ? 'node_modules' : `${key}/node_modules`;
      if (!(`${base}/${dep}` in lock.packages) && !(`node_modules/${dep}` in lock.packages)) missing.push(`${key || '(root)'} → ${dep}`);
    }
  }
  t.same(missing, [], 'no missing entries (after `npm install`, run: python3 scripts/lockfile-optional.py)');
});
