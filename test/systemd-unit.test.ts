import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const unit = readFileSync(new URL('../systemd/qmpcd.service', import.meta.url), 'utf8');
const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

t.test('systemd-analyze verify is clean', { skip: haveAnalyze ? false : 'systemd-analyze is not installed' }, async (t) => {
  // verify checks that ExecStart= exists, so point it at this checkout's node and CLI.
  const dir = mkdtempSync(join(tmpdir(), 'qmpc-unit-'));
  const file = join(dir, 'qmpcd.service');
  writeFileSync(file, unit.replaceAll('/usr/lib/qmpc/node/bin/node', process.execPath).replaceAll('/usr/lib/qmpc/daemon/cli.ts', new URL('../daemon/cli.ts', import.meta.url).pathname));
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
  t.equal(r.status, 0, 'exit 0');
  t.equal((r.stdout + r.stderr).trim(), '', 'no warnings');
  rmSync(dir, { recursive: true });
});

t.test('the hardened unit rates 2.0 or lower in systemd-analyze security', { skip: haveAnalyze ? false : 'systemd-analyze is not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmpc-unit-'));
  const file = join(dir, 'qmpcd.service');
  writeFileSync(file, unit);
  const out = execFileSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8' });
  const m = /Overall exposure level for qmpcd\.service: (\d+\.\d+)/.exec(out);
  t.ok(m, 'exposure level reported');
  t.ok(Number(m![1]) <= 2.0, `exposure ${m![1]} ≤ 2.0`);
  rmSync(dir, { recursive: true });
});

t.test('the unit keeps what the daemon needs and omits MemoryDenyWriteExecute', async (t) => {
  for (const line of ['Type=notify', 'WatchdogSec=', 'StateDirectory=qmpc', 'RuntimeDirectory=qmpc', 'ConfigurationDirectory=qmpc', 'User=qmpc', 'ExecReload=/usr/lib/qmpc/node/bin/node /usr/lib/qmpc/daemon/cli.ts admin reload', 'RestartPreventExitStatus=64 65 73 77 78']) {
    t.ok(unit.includes(line), line);
  }
  t.notOk(/^MemoryDenyWriteExecute=/m.test(unit), 'V8 needs W^X pages');
  t.match(unit, /^RestrictAddressFamilies=.*AF_INET .*AF_INET6/m, 'network allowed');
});
