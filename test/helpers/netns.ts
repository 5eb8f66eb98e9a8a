/**
 * A small lab of Linux network namespaces for cluster tests: N "hosts", each
 * its own namespace with one interface (`eth0`, an address on 10.77.0.0/24,
 * `lo` up, a multicast route so mDNS works), all plugged into one bridge that
 * lives in a dedicated "switch" namespace. Nothing is created in the root
 * namespace: no interface, address or route of the machine running the test
 * is touched, and deleting the lab's namespaces removes every veth and the
 * bridge with them.
 *
 *   switch ns  qmpclab<pid>-sw:  br0 ─┬─ p0 ══ eth0 (qmpclab<pid>-h0, 10.77.0.10)
 *                                   ├─ p1 ══ eth0 (qmpclab<pid>-h1, 10.77.0.11)
 *                                   └─ …
 *
 * A partition pulls a host's cable at the switch (`p<i>` down): the host's
 * own interface stays configured (routes included) and simply stops carrying
 * traffic, like a dead link; healing plugs it back in.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Every `ip` invocation is bounded. */
const IP_TIMEOUT_MS = 10_000;
/** Namespace names start with this, then the owning process's pid, then "-". */
export const NETNS_PREFIX = 'qmpclab';

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

function listNetns(): string[] {
  // `ip netns list` prints "NAME" or "NAME (id: N)" per line.
  return ip(['netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Why network-namespace tests cannot run here, or null when they can: needs
 * root, the `ip` tool and permission to create a namespace (probed for real).
 */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return `network namespaces are Linux-only (this is ${process.platform})`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'network namespaces need root (run the tests as root to include this file)';
  try {
    ip(['-V']);
  } catch {
    return 'the `ip` tool (iproute2) is not installed';
  }
  const probe = `${NETNS_PREFIX}${process.pid}-probe`;
  try {
    ip(['netns', 'add', probe]);
    ip(['-n', probe, 'link', 'set', 'lo', 'up']);
  } catch (e) {
    ipQuiet(['netns', 'del', probe]);
    return `\`ip netns\` is unavailable here: ${((e as { stderr?: string }).stderr || (e as Error).message).trim()}`;
  }
  ipQuiet(['netns', 'del', probe]);
  return null;
}

/** Deletes namespaces a previous run of this helper left behind (its process is gone). Processes inside are not touched. */
export function sweepStaleNetns(prefix = NETNS_PREFIX): string[] {
  const swept: string[] = [];
  const re = new RegExp(`^${prefix}(\\d+)-`);
  for (const name of listNetns()) {
    const m = re.exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    ipQuiet(['netns', 'del', name]);
    swept.push(name);
  }
  return swept;
}

export interface NetnsHost {
  /** Position in the lab (0-based). */
  index: number;
  label: string;
  /** The namespace name (for `ip netns exec`). */
  ns: string;
  /** The host's interface inside its namespace. */
  ifname: string;
  /** Its IPv4 address (no prefix length). */
  address: string;
  /** Its port on the bridge, inside the switch namespace. */
  port: string;
}

export interface NetnsLabOptions {
  /** One entry per host: a label for messages and the last octet of its address. */
  hosts: { label: string; octet: number }[];
  /** The first three octets of the /24 (default 10.77.0). */
  subnet?: string;
  /** Namespace name prefix, so labs of different tests never meet (default NETNS_PREFIX). */
  prefix?: string;
}

export interface NetnsLab {
  switchNs: string;
  bridge: string;
  hosts: NetnsHost[];
  /** The argv prefix that runs a program inside a host's namespace. */
  execArgs(host: NetnsHost, argv: string[]): string[];
  /** Runs a command inside a host's namespace (bounded) and returns its stdout. */
  exec(host: NetnsHost, argv: string[], timeoutMs?: number): Promise<string>;
  /** Pulls the host's cable at the switch: nothing reaches it or leaves it. */
  linkDown(host: NetnsHost): void;
  /** Plugs it back in (and makes sure its multicast route is in place). */
  linkUp(host: NetnsHost): void;
  /** Operational state of a host's port on the bridge ("UP", "DOWN", …). */
  portState(host: NetnsHost): string;
  /** Deletes every namespace of the lab (veths and bridge go with them). Idempotent. */
  destroy(): void;
}

/** Creates the switch namespace with its bridge and one namespace per host; undoes everything if a step fails. */
export function createNetnsLab(opts: NetnsLabOptions): NetnsLab {
  const subnet = opts.subnet ?? '10.77.0';
  if (!/^10\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`subnet ${subnet} must be the first three octets of a 10.x.y.0/24`);
  const tag = `${opts.prefix ?? NETNS_PREFIX}${process.pid}`;
  const switchNs = `${tag}-sw`;
  const bridge = 'br0';
  const created: string[] = [];
  const hosts: NetnsHost[] = opts.hosts.map((h, index) => {
    if (!Number.isInteger(h.octet) || h.octet < 1 || h.octet > 254) throw new Error(`host ${h.label}: octet ${h.octet} is not in 1..254`);
    return { index, label: h.label, ns: `${tag}-h${index}`, ifname: 'eth0', address: `${subnet}.${h.octet}`, port: `p${index}` };
  });
  let destroyed = false;
  const destroy = () => {
    if (destroyed) return;
    destroyed = true;
    // Host namespaces first: deleting one removes its veth pair, so the bridge empties before its namespace goes.
    for (const ns of created.reverse()) ipQuiet(['netns', 'del', ns]);
  };
  const addNs = (name: string) => {
    ip(['netns', 'add', name]);
    created.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  };
  const multicastRoute = (h: NetnsHost) => ip(['-n', h.ns, 'route', 'replace', '224.0.0.0/4', 'dev', h.ifname]);
  try {
    addNs(switchNs);
    ip(['-n', switchNs, 'link', 'add', bridge, 'type', 'bridge']);
    ip(['-n', switchNs, 'link', 'set', bridge, 'up']);
    for (const h of hosts) {
      addNs(h.ns);
      // Both ends are created in the switch namespace and the host end moved into its own namespace.
      ip(['-n', switchNs, 'link', 'add', h.port, 'type', 'veth', 'peer', 'name', h.ifname, 'netns', h.ns]);
      ip(['-n', switchNs, 'link', 'set', h.port, 'master', bridge]);
      ip(['-n', switchNs, 'link', 'set', h.port, 'up']);
      ip(['-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', h.ifname]);
      ip(['-n', h.ns, 'link', 'set', h.ifname, 'up']);
      multicastRoute(h);
    }
  } catch (e) {
    destroy();
    const err = e as Error & { stderr?: string };
    throw new Error(`cannot build the network namespace lab: ${(err.stderr || err.message).trim()}`, { cause: e });
  }
  return {
    switchNs, bridge, hosts,
    execArgs: (h, argv) => ['netns', 'exec', h.ns, ...argv],
    async exec(h, argv, timeoutMs = IP_TIMEOUT_MS) {
      const { stdout } = await execFileP('ip', ['netns', 'exec', h.ns, ...argv], { timeout: timeoutMs, encoding: 'utf8' });
      return stdout;
    },
    linkDown(h) {
      ip(['-n', switchNs, 'link', 'set', h.port, 'down']);
    },
    linkUp(h) {
      ip(['-n', switchNs, 'link', 'set', h.port, 'up']);
      multicastRoute(h);
    },
    portState(h) {
      const line = ip(['-n', switchNs, '-o', 'link', 'show', h.port]);
      return /\bstate (\S+)/.exec(line)?.[1] ?? 'UNKNOWN';
    },
    destroy,
  };
}
