/**
 * MPC-channel benchmark: throughput of 1 MiB and 64 MiB messages and
 * round-trip latency, over the daemon's libp2p transport (TCP + Noise + Yamux,
 * daemon/network) next to raw TCP (node:net) with the same frame codec and the
 * same send-side copy, in the same run.
 *
 * Two nodes in two child processes (a receiver that echoes small messages and
 * a sender that measures), both started with the daemon's Node options; this
 * process only coordinates. Throughput: K messages sent back to back, then an
 * 8-byte marker whose echo proves that everything before it arrived (per-pair
 * order). RTT: one message and the marker's echo, i.e. one-way time of the
 * message plus a small-message return.
 *
 * The two transports run alternately, --trials times (default 3), and each
 * figure is the best trial: on a shared machine the best run is the one least
 * disturbed by other load, and both transports get the same chances.
 *
 *   node scripts/bench-net.ts [--quick] [--trials N] [--json FILE] [--profile DIR]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { silentLogger } from '../daemon/logger.ts';
import { createPartyNode } from '../daemon/network/node.ts';
import { createMpcNetwork } from '../daemon/network/mpc-transport.ts';
import { FrameDecoder, FrameError, encodeHeader, sessionKey } from '../daemon/network/frames.ts';
import { FRAME_KIND } from '../daemon/network/constants.ts';
import { DAEMON_NODE_OPTIONS } from '../daemon/node-options.ts';
import type { PartyIndex } from '../protocols/transport.ts';

const MiB = 1024 * 1024;
const MARK = 0xff;

interface Plan {
  sizes: { bytes: number; count: number; rttReps: number }[];
  pingReps: number;
  warmupMiB: number;
}

interface SizeResult {
  bytes: number;
  MiBs: number;
  rttMs: number;
  senderCpuSecPerGiB: number;
  receiverCpuSecPerGiB: number;
}

interface RunResult {
  sizes: SizeResult[];
  pingRttMs: number;
  pingP99Ms: number;
}

/** A message channel the bench runs over: the MPC transport or raw TCP. */
interface Channel {
  send(m: Uint8Array): void;
  recv(): Promise<Uint8Array>;
}

// ---------------------------------------------------------------- sender side

async function measure(ch: Channel, plan: Plan): Promise<RunResult> {
  const mark = () => Uint8Array.of(MARK, 0, 0, 0, 0, 0, 0, 0);
  const sync = async () => {
    ch.send(mark());
    await ch.recv();
  };
  // Warm-up: connection windows grow, JIT settles.
  const w = new Uint8Array(MiB);
  for (let i = 0; i < plan.warmupMiB; i++) ch.send(w);
  await sync();

  const pings: number[] = [];
  for (let i = 0; i < plan.pingReps; i++) {
    const t0 = performance.now();
    await sync();
    pings.push(performance.now() - t0);
  }
  pings.sort((a, b) => a - b);

  const sizes: SizeResult[] = [];
  for (const { bytes, count, rttReps } of plan.sizes) {
    const msg = randomBytes(bytes);
    const rtts: number[] = [];
    for (let i = 0; i < rttReps; i++) {
      const t0 = performance.now();
      ch.send(msg);
      await sync();
      rtts.push(performance.now() - t0);
    }
    rtts.sort((a, b) => a - b);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < count; i++) ch.send(msg);
    await sync();
    const sec = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const total = bytes * count;
    sizes.push({ bytes, MiBs: total / MiB / sec, rttMs: rtts[rtts.length >> 1], senderCpuSecPerGiB: (cpu.user + cpu.system) / 1e6 / (total / 1024 / MiB), receiverCpuSecPerGiB: NaN });
  }
  return { sizes, pingRttMs: pings[pings.length >> 1], pingP99Ms: pings[Math.floor(pings.length * 0.99)] };
}

/** CPU seconds this process had used at each marker, so the parent can charge each phase. */
const cpuAtMarker: number[] = [];

/** Receiver: echo markers, drop everything else. */
async function echo(ch: Channel): Promise<never> {
  for (;;) {
    const m = await ch.recv();
    if (m.byteLength === 8 && m[0] === MARK) {
      const c = process.cpuUsage();
      cpuAtMarker.push((c.user + c.system) / 1e6);
      ch.send(m);
    }
  }
}

/** Receiver CPU per GiB of each throughput phase, from the marker log (marker order is fixed by measure()). */
function receiverCpu(plan: Plan, marks: number[]): number[] {
  let k = 1 + plan.pingReps; // warm-up, pings
  return plan.sizes.map(({ bytes, count, rttReps }) => {
    k += rttReps;
    const sec = marks[k] - marks[k - 1];
    k += 1;
    return sec / ((bytes * count) / 1024 / MiB);
  });
}

// ---------------------------------------------------------------- libp2p

interface Libp2pSetup {
  keys: string[]; // protobuf private keys, base64
  sid: string;
}

async function libp2pChannel(role: 'send' | 'recv', setup: Libp2pSetup, peerAddr: string | null, onListen: (addr: string) => void): Promise<Channel> {
  const keys = setup.keys.map((k) => privateKeyFromProtobuf(Buffer.from(k, 'base64')));
  const ids = keys.map((k) => peerIdFromPrivateKey(k).toString());
  const me: PartyIndex = role === 'send' ? 0 : 1;
  const peer: PartyIndex = role === 'send' ? 1 : 0;
  // Party 2 exists only on paper: a committee has three members; nothing here talks to it.
  const committee = ([0, 1, 2] as PartyIndex[]).map((i) => ({ index: i, peerId: ids[i], addrs: i === peer && peerAddr ? [peerAddr] : [] }));
  const node = await createPartyNode(
    { listen: ['/ip4/127.0.0.1/tcp/0'], mdns: { enabled: false }, committee, redialMinMs: 100, redialMaxMs: 2000, recvTimeoutMs: 300_000 },
    { logger: silentLogger(), privateKey: keys[me] },
  );
  const net = await createMpcNetwork(node, { logger: silentLogger() });
  onListen(node.getMultiaddrs()[0].toString().replace(/\/p2p\/.*/, ''));
  // Not waitForCommittee: party 2 never comes. Bounded like every network wait.
  const deadline = Date.now() + 30_000;
  while (role === 'send' && !node.connectedParties().includes(peer)) {
    if (Date.now() > deadline) throw new Error('the receiver did not connect within 30 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  const s = net.openSession(Buffer.from(setup.sid, 'hex'), me, { timeoutMs: 300_000 });
  return { send: (m) => s.send(peer, m), recv: () => s.recv(peer) };
}

// ---------------------------------------------------------------- raw TCP

/** node:net with the MPC frame codec and the transport's send-side copy: libp2p is the only difference. */
function rawChannel(sock: Socket, sid: string): Channel {
  sock.setNoDelay(true);
  const dec = new FrameDecoder();
  const inbox: Uint8Array[] = [];
  let waiter: ((m: Uint8Array) => void) | null = null;
  let seq = 0;
  sock.on('data', (chunk) => {
    for (const f of dec.push(chunk)) {
      if (f instanceof FrameError) throw f;
      if (waiter) {
        const w = waiter;
        waiter = null;
        w(f.payload);
      } else inbox.push(f.payload);
    }
  });
  const queue: Uint8Array[] = [];
  let blocked = false;
  const pump = () => {
    while (queue.length > 0 && !blocked) {
      if (!sock.write(queue.shift()!)) blocked = true;
    }
  };
  sock.on('drain', () => {
    blocked = false;
    pump();
  });
  return {
    send(m) {
      const copy = Uint8Array.prototype.slice.call(m);
      queue.push(encodeHeader(FRAME_KIND.data, sid, seq++, copy.byteLength), copy);
      pump();
    },
    recv() {
      const m = inbox.shift();
      if (m) return Promise.resolve(m);
      return new Promise((r) => (waiter = r));
    },
  };
}

// ---------------------------------------------------------------- processes

type ToChild =
  | { cmd: 'start'; mode: 'libp2p' | 'raw'; role: 'send' | 'recv'; setup: Libp2pSetup; peerAddr: string | null; plan: Plan }
  | { cmd: 'cpu' }
  | { cmd: 'exit' };
type FromChild = { listening: string } | { result: RunResult } | { cpu: number[] } | { error: string };

async function child(): Promise<void> {
  const send = (m: FromChild) => process.send!(m);
  process.on('message', async (msg: ToChild) => {
    if (msg.cmd === 'exit') process.exit(0); // a normal exit, so --cpu-prof writes its profile
    if (msg.cmd === 'cpu') return send({ cpu: cpuAtMarker });
    try {
      if (msg.mode === 'libp2p') {
        const ch = await libp2pChannel(msg.role, msg.setup, msg.peerAddr, (addr) => send({ listening: addr }));
        if (msg.role === 'recv') await echo(ch);
        else send({ result: await measure(ch, msg.plan) });
      } else if (msg.role === 'recv') {
        const srv = createServer((sock) => void echo(rawChannel(sock, msg.setup.sid)));
        srv.listen(0, '127.0.0.1', () => send({ listening: String((srv.address() as { port: number }).port) }));
      } else {
        const sock = connect(Number(msg.peerAddr), '127.0.0.1');
        await new Promise((r) => sock.once('connect', r));
        send({ result: await measure(rawChannel(sock, msg.setup.sid), msg.plan) });
      }
    } catch (e) {
      send({ error: e instanceof Error ? e.stack ?? e.message : String(e) });
    }
  });
}

function spawn(profileDir: string | null): ChildProcess {
  // Both transports run under the daemon's Node options (daemon/node-options.ts), so the runtime is the same on both sides.
  const execArgv = [...process.execArgv, ...DAEMON_NODE_OPTIONS, '--max-old-space-size=8192'];
  if (profileDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`);
  return fork(process.argv[1], ['--child'], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function next(cp: ChildProcess): Promise<FromChild> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`child exited with ${code}`));
    cp.once('exit', onExit);
    cp.once('message', (m: FromChild) => {
      cp.off('exit', onExit);
      if ('error' in m) reject(new Error(m.error));
      else resolve(m);
    });
  });
}

async function run(mode: 'libp2p' | 'raw', setup: Libp2pSetup, plan: Plan, profileDir: string | null): Promise<RunResult> {
  const recv = spawn(profileDir), send = spawn(profileDir);
  try {
    recv.send({ cmd: 'start', mode, role: 'recv', setup, peerAddr: null, plan } satisfies ToChild);
    const l = await next(recv);
    if (!('listening' in l)) throw new Error('receiver did not report its address');
    send.send({ cmd: 'start', mode, role: 'send', setup, peerAddr: l.listening, plan } satisfies ToChild);
    let r = await next(send);
    if ('listening' in r) r = await next(send);
    if (!('result' in r)) throw new Error('sender did not report a result');
    recv.send({ cmd: 'cpu' } satisfies ToChild);
    const c = await next(recv);
    if (!('cpu' in c)) throw new Error('receiver did not report its CPU');
    const rc = receiverCpu(plan, c.cpu);
    r.result.sizes.forEach((s, i) => (s.receiverCpuSecPerGiB = rc[i]));
    return r.result;
  } finally {
    for (const cp of [send, recv]) {
      const gone = new Promise((r) => cp.once('exit', r));
      cp.send({ cmd: 'exit' } satisfies ToChild);
      const t = setTimeout(() => cp.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const jsonAt = args.indexOf('--json');
  const jsonFile = jsonAt >= 0 ? args[jsonAt + 1] : null;
  const profAt = args.indexOf('--profile');
  const profileDir = profAt >= 0 ? args[profAt + 1] : null;
  const plan: Plan = quick
    ? { sizes: [{ bytes: MiB, count: 64, rttReps: 5 }, { bytes: 64 * MiB, count: 2, rttReps: 1 }], pingReps: 200, warmupMiB: 32 }
    : { sizes: [{ bytes: MiB, count: 256, rttReps: 15 }, { bytes: 64 * MiB, count: 6, rttReps: 3 }], pingReps: 1000, warmupMiB: 128 };
  const keys = await Promise.all([0, 1, 2].map(async () => Buffer.from(privateKeyToProtobuf(await generateKeyPair('Ed25519'))).toString('base64')));
  const setup: Libp2pSetup = { keys, sid: sessionKey(randomBytes(16)) };

  const trialsAt = args.indexOf('--trials');
  const trials = trialsAt >= 0 ? Math.max(1, Number(args[trialsAt + 1]) | 0) : quick ? 1 : 3;
  const lps: RunResult[] = [], raws: RunResult[] = [];
  for (let i = 0; i < trials; i++) {
    lps.push(await run('libp2p', setup, plan, profileDir));
    raws.push(await run('raw', setup, plan, profileDir));
  }
  const lp = best(lps), raw = best(raws);

  const label = (b: number) => (b >= MiB ? `${b / MiB} MiB` : `${b} B`);
  const rows: string[][] = [['message', 'libp2p MiB/s', 'raw MiB/s', 'ratio', 'libp2p RTT ms', 'raw RTT ms', 'CPU s/GiB libp2p send/recv', 'raw send/recv']];
  const json: Record<string, unknown> = {};
  json['8 B'] = { libp2pMiBs: null, rawMiBs: null, ratio: null, rttMs: round(lp.pingRttMs), rawRttMs: round(raw.pingRttMs), rttP99Ms: round(lp.pingP99Ms), rawRttP99Ms: round(raw.pingP99Ms) };
  rows.push(['8 B', '-', '-', '-', fmt(lp.pingRttMs, 3), fmt(raw.pingRttMs, 3), '-', '-']);
  const pair = (a: number, b: number) => `${fmt(a, 2)} / ${fmt(b, 2)}`;
  lp.sizes.forEach((l, i) => {
    const r = raw.sizes[i];
    const ratio = l.MiBs / r.MiBs;
    json[label(l.bytes)] = { libp2pMiBs: round(l.MiBs), rawMiBs: round(r.MiBs), ratio: round(ratio, 3), rttMs: round(l.rttMs), rawRttMs: round(r.rttMs), senderCpuSecPerGiB: round(l.senderCpuSecPerGiB, 3), receiverCpuSecPerGiB: round(l.receiverCpuSecPerGiB, 3), rawSenderCpuSecPerGiB: round(r.senderCpuSecPerGiB, 3), rawReceiverCpuSecPerGiB: round(r.receiverCpuSecPerGiB, 3) };
    rows.push([label(l.bytes), fmt(l.MiBs, 1), fmt(r.MiBs, 1), fmt(ratio, 2), fmt(l.rttMs, 2), fmt(r.rttMs, 2), pair(l.senderCpuSecPerGiB, l.receiverCpuSecPerGiB), pair(r.senderCpuSecPerGiB, r.receiverCpuSecPerGiB)]);
  });
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  console.log(`MPC channel: two processes on 127.0.0.1, node ${process.version} ${DAEMON_NODE_OPTIONS.join(' ')}, best of ${trials} trial(s)${quick ? ', quick' : ''}`);
  for (const r of rows) console.log(r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  '));
  if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ node: process.version, nodeOptions: DAEMON_NODE_OPTIONS, quick, trials, sizes: json }, null, 2) + '\n');
}

/** Per figure, the best trial: highest throughput, lowest latency and CPU. */
function best(rs: RunResult[]): RunResult {
  return {
    pingRttMs: Math.min(...rs.map((r) => r.pingRttMs)),
    pingP99Ms: Math.min(...rs.map((r) => r.pingP99Ms)),
    sizes: rs[0].sizes.map((s, i) => ({
      bytes: s.bytes,
      MiBs: Math.max(...rs.map((r) => r.sizes[i].MiBs)),
      rttMs: Math.min(...rs.map((r) => r.sizes[i].rttMs)),
      senderCpuSecPerGiB: Math.min(...rs.map((r) => r.sizes[i].senderCpuSecPerGiB)),
      receiverCpuSecPerGiB: Math.min(...rs.map((r) => r.sizes[i].receiverCpuSecPerGiB)),
    })),
  };
}

function fmt(x: number, d: number): string {
  return x.toFixed(d);
}

function round(x: number, d = 2): number {
  return Math.round(x * 10 ** d) / 10 ** d;
}

if (process.argv.includes('--child')) await child();
else await main();
