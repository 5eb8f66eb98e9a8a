/**
 * Human rendering of admin replies for `qmpc admin CMD` (without `--json`):
 * arrays of flat objects become aligned columns, objects become `key: value`
 * lines, nesting is indented. Strings are shown with control characters
 * escaped, since results carry text from peers and clients (names, errors)
 * that must not drive the operator's terminal.
 */
import type { AdminArgSpec, AdminHelpEntry } from './server.ts';

const INDENT = '  ';
const GAP = '  ';

/** The text to print for `result` of `cmd` (no trailing newline). */
export function formatReply(cmd: string, result: unknown): string {
  if (cmd === 'help' && isHelp(result)) return formatHelp(result);
  return block(result).join('\n');
}

type Scalar = string | number | bigint | boolean | null | undefined;

function isScalar(v: unknown): v is Scalar {
  return v === null || v === undefined || (typeof v !== 'object' && typeof v !== 'function' && typeof v !== 'symbol');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isFlat(v: unknown): v is Record<string, Scalar> {
  return isPlainObject(v) && Object.values(v).every(isScalar);
}

/** Escapes C0/C1 controls and DEL so data cannot move the cursor or recolour the terminal. */
export function sanitize(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0');
  });
}

function scalar(v: Scalar): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return v === '' ? '""' : sanitize(v);
  return String(v);
}

/** Lines for any value, at column 0; callers indent. */
function block(v: unknown): string[] {
  if (isScalar(v)) return [v === null || v === undefined ? 'ok' : scalar(v)];
  if (Array.isArray(v)) return arrayLines(v);
  if (isPlainObject(v)) return objectLines(v);
  return [sanitize(String(v))];
}

function arrayLines(a: unknown[]): string[] {
  if (a.length === 0) return ['(none)'];
  if (a.every(isScalar)) return a.map((x) => scalar(x));
  if (a.every(isFlat)) return table(a);
  const out: string[] = [];
  for (const item of a) {
    const lines = block(item);
    out.push('- ' + lines[0], ...lines.slice(1).map((l) => INDENT + l));
  }
  return out;
}

function objectLines(o: Record<string, unknown>): string[] {
  const keys = Object.keys(o);
  if (keys.length === 0) return ['(empty)'];
  const width = Math.max(...keys.filter((k) => isScalar(o[k])).map((k) => sanitize(k).length + 1), 0);
  const out: string[] = [];
  for (const k of keys) {
    const v = o[k];
    const label = sanitize(k) + ':';
    if (isScalar(v)) {
      out.push(label.padEnd(width) + ' ' + scalar(v));
    } else {
      const inner = block(v);
      out.push(label, ...inner.map((l) => INDENT + l));
    }
  }
  return out;
}

/** Columns are the union of keys in first-seen order; numbers right-aligned; no trailing spaces. */
function table(rows: Record<string, Scalar>[]): string[] {
  const cols: string[] = [];
  const seen = new Set<string>();
  for (const r of rows) {
    for (const k of Object.keys(r)) {
      if (!seen.has(k)) {
        seen.add(k);
        cols.push(k);
      }
    }
  }
  if (cols.length === 0) return rows.map(() => '(empty)');
  const header = cols.map((c) => sanitize(c).toUpperCase());
  const cells = rows.map((r) => cols.map((c) => (Object.hasOwn(r, c) ? scalar(r[c]) : '')));
  const isNum = (v: Scalar) => typeof v === 'number' || typeof v === 'bigint';
  const numeric = cols.map(
    (c) => rows.some((r) => isNum(r[c])) && rows.every((r) => !Object.hasOwn(r, c) || r[c] == null || isNum(r[c])),
  );
  const widths = cols.map((_, i) => Math.max(header[i].length, ...cells.map((row) => row[i].length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => (numeric[i] ? cell.padStart(widths[i]) : i === row.length - 1 ? cell : cell.padEnd(widths[i])))
      .join(GAP)
      .trimEnd();
  return [line(header), ...cells.map(line)];
}

function isHelp(v: unknown): v is AdminHelpEntry[] {
  return Array.isArray(v) && v.every((e) => isPlainObject(e) && typeof e.command === 'string' && typeof e.help === 'string');
}

/**
 *   help     list the commands and what they do
 *   jobs     list jobs
 *              state=<string>  only jobs in this state
 */
function formatHelp(entries: AdminHelpEntry[]): string {
  if (entries.length === 0) return '(no commands)';
  const width = Math.max(...entries.map((e) => sanitize(e.command).length));
  const out: string[] = [];
  for (const e of entries) {
    out.push((sanitize(e.command).padEnd(width) + GAP + sanitize(e.help)).trimEnd());
    const args = isPlainObject(e.args) ? Object.entries(e.args as Record<string, AdminArgSpec>) : [];
    const names = args.map(([name, spec]) => `${sanitize(name)}=<${sanitize(String(spec?.type ?? 'any'))}>`);
    const argWidth = Math.max(0, ...names.map((n) => n.length));
    args.forEach(([, spec], i) => {
      const help = typeof spec?.help === 'string' ? sanitize(spec.help) : '';
      const req = spec?.required ? ' (required)' : '';
      out.push((' '.repeat(width) + GAP + INDENT + names[i].padEnd(argWidth) + GAP + help + req).trimEnd());
    });
  }
  return out.join('\n');
}
