/**
 * The daemon's Node options (daemon/node-options.ts) are the ones every
 * static launcher passes, Node accepts them, and a daemon started without
 * them can tell.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { DAEMON_NODE_OPTIONS, missingNodeOptions } from '../daemon/node-options.ts';

const read = (rel: string) => readFileSync(new URL(`../${rel}`, import.meta.url), 'utf8');

t.test('every launcher passes the daemon\'s Node options', async (t) => {
  const launchers: [string, string][] = [
    ['systemd/qmpcd.service ExecStart', read('systemd/qmpcd.service').match(/^ExecStart=.*$/m)![0]],
    ['Dockerfile ENTRYPOINT', read('Dockerfile').match(/^ENTRYPOINT .*$/m)![0]],
    ['/usr/bin/qmpc from scripts/install.sh', read('scripts/install.sh').match(/^exec .*cli\.ts.*$/m)![0]],
    ['daemon/cli.ts shebang', read('daemon/cli.ts').split('\n')[0]],
  ];
  for (const [name, line] of launchers) {
    // Before the script: after it, it would be an argument of qmpc, not an option of node.
    const nodePart = line.includes('cli.ts') ? line.slice(0, line.indexOf('cli.ts')) : line;
    for (const o of DAEMON_NODE_OPTIONS) t.ok(nodePart.includes(o), `${name} passes ${o} to node: ${line}`);
  }
});

t.test('node accepts them', async (t) => {
  const r = spawnSync(process.execPath, [...DAEMON_NODE_OPTIONS, '-e', 'process.exit(0)'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 0, `node ${DAEMON_NODE_OPTIONS.join(' ')} starts (${r.stderr.trim() || 'no error'})`);
});

t.test('missingNodeOptions looks at the exec arguments and NODE_OPTIONS', async (t) => {
  t.same(missingNodeOptions([], ''), DAEMON_NODE_OPTIONS, 'none given: all missing');
  t.same(missingNodeOptions([...DAEMON_NODE_OPTIONS], ''), [], 'on the command line');
  t.same(missingNodeOptions(['--enable-source-maps'], `--trace-warnings ${DAEMON_NODE_OPTIONS.join(' ')}`), [], 'in NODE_OPTIONS');
});
