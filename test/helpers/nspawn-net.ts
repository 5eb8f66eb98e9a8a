/**
 * Network namespaces for the systemd-nspawn containers: one "switch"
 * namespace holding a bridge, and one namespace per container with a single
 * interface `eth0` (10.78.0.x/24, `lo` up, a multicast route so mDNS works)
 * whose veth peer is a port of the bridge. Nothing is created in the root
 * namespace, and deleting the namespaces removes every veth and the bridge.
 *
 *   qmpcnsp<pid>-sw:  br0 ─┬─ p0 ══ eth0 (qmpcnsp<pid>-h0, 10.78.0.10)
 *                          ├─ p1 ══ eth0 (qmpcnsp<pid>-h1, 10.78.0.11)
 *                          └─ …
 */
import { execFileSync } from 'node:child_process';

const IP_TIMEOUT_MS = 10_000;
export const NSPAWN_NETNS_PREFIX = 'qmpcnsp';
export const NSPAWN_SUBNET = '10.78.0';

function ip(args: string[]): string {
  return execFileSync('ip', args, { timeout: IP_TIMEOUT_MS, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function ipQuiet(args: string[]): void {
  try {
    ip(args);
  } catch {
    /* best effort (teardown) */
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function listNetns(): string[] {
  return ip(['netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n);
}

/** Deletes namespaces an earlier run of this helper left behind (its process is gone). */
export function sweepStaleNspawnNetns(): string[] {
  const swept: string[] = [];
  const re = new RegExp(`^${NSPAWN_NETNS_PREFIX}(\\d+)-`);
  for (const name of listNetns()) {
    const m = re.exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    ipQuiet(['netns', 'del', name]);
    swept.push(name);
  }
  return swept;
}

export interface NspawnNetHost {
  index: number;
  /** The namespace name; its path is /run/netns/<ns>. */
  ns: string;
  nsPath: string;
  ifname: 'eth0';
  address: string;
}

export interface NspawnNet {
  switchNs: string;
  hosts: NspawnNetHost[];
  /** Deletes every namespace (veths and bridge go with them). Idempotent, synchronous. */
  destroy(): void;
}

/** Creates the switch and `count` host namespaces, host i at 10.78.0.(firstOctet + i); undoes everything if a step fails. */
export function createNspawnNet(count: number, firstOctet = 10): NspawnNet {
  const tag = `${NSPAWN_NETNS_PREFIX}${process.pid}`;
  const switchNs = `${tag}-sw`;
  const created: string[] = [];
  let destroyed = false;
  const destroy = () => {
    if (destroyed) return;
    destroyed = true;
    for (const ns of created.reverse()) ipQuiet(['netns', 'del', ns]);
  };
  const hosts: NspawnNetHost[] = [];
  try {
    ip(['netns', 'add', switchNs]);
    created.push(switchNs);
    ip(['-n', switchNs, 'link', 'set', 'lo', 'up']);
    ip(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0']);
    ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    for (let i = 0; i < count; i++) {
      const ns = `${tag}-h${i}`;
      const address = `${NSPAWN_SUBNET}.${firstOctet + i}`;
      ip(['netns', 'add', ns]);
      created.push(ns);
      ip(['-n', switchNs, 'link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      ip(['-n', switchNs, 'link', 'set', `p${i}`, 'master', 'br0', 'up']);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      ip(['-n', ns, 'link', 'set', 'eth0', 'up', 'multicast', 'on']);
      // mDNS (224.0.0.251) needs a route: these namespaces have no default route.
      ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
      hosts.push({ index: i, ns, nsPath: `/run/netns/${ns}`, ifname: 'eth0', address });
    }
  } catch (e) {
    destroy();
    const err = e as Error & { stderr?: string };
    throw new Error(`cannot create the network namespaces: ${(err.stderr || err.message).trim()}`);
  }
  return { switchNs, hosts, destroy };
}
