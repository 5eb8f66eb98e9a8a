/**
 * The daemon's observability endpoint: Prometheus /metrics plus the guide's
 * health endpoints (/health, /quantum/health, /security/status) on one
 * node:http server. The daemon supplies the reports; this module only serves
 * them, so it never needs to know about peers, planners or the store.
 *
 * Health semantics: a report's `status` is 'healthy', 'degraded' (serving,
 * but e.g. a peer is reconnecting) or 'unhealthy'. Only 'unhealthy' — or a
 * provider that throws or exceeds healthTimeoutMs — answers 503, so that a
 * liveness probe does not restart a daemon that is merely waiting for a peer.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { TimeoutError } from '../../protocols/errors.ts';
import { ConfigError, EXIT, QmpcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { PeerRefusalReason } from './metrics.ts';
import { defaultMetricsOptions, type MetricsOptions } from './options.ts';

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

export interface HealthCheck {
  status: HealthStatus;
  /** Human-readable reason, e.g. "party 2 disconnected 4 s ago". */
  detail?: string;
}

/** GET /health */
export interface HealthReport {
  status: HealthStatus;
  version: string;
  /** This daemon's party index. */
  party: number;
  uptimeSeconds: number;
  /** Per subsystem: store, network, peers, scheduler, backend, … */
  checks: Record<string, HealthCheck>;
}

export type PlannerState = 'idle' | 'planning' | 'executing' | 'disagreed' | 'error';

/** GET /quantum/health: the (quantum-inspired, classical) planner. */
export interface QuantumHealthReport {
  status: HealthStatus;
  planner: { name: string; version: string; state: PlannerState };
  /** quantum_annealing_steps in force. */
  annealingSteps: number;
  plansComputed: number;
  lastPlan?: {
    /** Hex digest the three parties compared. */
    digest: string;
    /** ISO 8601 time the plan was agreed or rejected. */
    at: string;
    optimizationSeconds: number;
    /** Whether all three digests matched. */
    agreed: boolean;
    tasks: number;
  };
  cache?: { entries: number; hits: number; misses: number };
}

/** GET /security/status */
export interface SecurityStatusReport {
  status: HealthStatus;
  /** Bits (the guide's security_level): AES-128 PRF keys, Ed25519 identities. */
  securityLevel: number;
  protocol: string;
  threatModel: 'semi-honest, honest majority';
  /** There is no plaintext fallback; the literal types say so. */
  /** cipher: Noise's ChaCha20-Poly1305 implementation here (libsodium, or node:crypto where sodium-native cannot load). */
  channel: { encryption: 'noise'; noiseEncryption: true; cipher: string; muxer: string };
  committee: {
    size: number;
    party: number;
    members: { party: number; peerId: string; connected: boolean }[];
  };
  refusedPeers: {
    total: number;
    /** Most recent first, bounded by the daemon. */
    recent: { peerId: string; reason: PeerRefusalReason; at: string }[];
  };
  threatsDetected: number;
}

type Provider<T> = () => Promise<T> | T;

export interface MetricsServerDeps {
  registry: Registry;
  logger: Logger;
  health: Provider<HealthReport>;
  quantumHealth: Provider<QuantumHealthReport>;
  securityStatus: Provider<SecurityStatusReport>;
  /** Aborting closes the server, like close(). */
  signal?: AbortSignal;
}

export interface MetricsServer {
  /** The bound address (the real port when options.port was 0). */
  readonly address: { host: string; port: number };
  /** Base URL, e.g. http://127.0.0.1:9464 */
  readonly url: string;
  close(): Promise<void>;
}

/** The endpoint cannot listen (port in use, address not local, no permission). */
export class MetricsServerError extends QmpcError {
  readonly exitCode = EXIT.cantCreat;
  constructor(message: string, cause?: unknown) {
    super('ERR_METRICS_LISTEN', message, { cause });
  }
}

const JSON_TYPE = 'application/json; charset=utf-8';
const STATUSES: ReadonlySet<string> = new Set<HealthStatus>(['healthy', 'degraded', 'unhealthy']);

function validate(opts: MetricsOptions): void {
  if (typeof opts.host !== 'string' || opts.host.length === 0) {
    throw new ConfigError(`metrics.host: expected a host name or IP address, found ${JSON.stringify(opts.host)}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65_535) {
    throw new ConfigError(`metrics.port: expected an integer 0–65535, found ${JSON.stringify(opts.port)}`);
  }
  if (!Number.isFinite(opts.healthTimeoutMs) || opts.healthTimeoutMs <= 0) {
    throw new ConfigError(`metrics.healthTimeoutMs: expected a positive number of milliseconds, found ${JSON.stringify(opts.healthTimeoutMs)}`);
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** Starts listening; resolves once bound. `opts.enabled` is the caller's decision, not checked here. */
export async function startMetricsServer(options: Partial<MetricsOptions>, deps: MetricsServerDeps): Promise<MetricsServer> {
  const opts: MetricsOptions = { ...defaultMetricsOptions, ...options };
  validate(opts);
  deps.signal?.throwIfAborted();
  const { registry, logger } = deps;

  const reply = (res: ServerResponse, code: number, body: string, type: string, extra: Record<string, string> = {}): void => {
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
    res.end(body);
  };
  const replyJson = (res: ServerResponse, code: number, value: unknown, extra?: Record<string, string>): void =>
    reply(res, code, JSON.stringify(value) + '\n', JSON_TYPE, extra);

  const withTimeout = async <T>(what: string, provider: Provider<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`${what} did not answer within ${opts.healthTimeoutMs} ms`)), opts.healthTimeoutMs);
    });
    try {
      return await Promise.race([Promise.resolve().then(provider), timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  const serveReport = async (res: ServerResponse, what: string, provider: Provider<{ status: HealthStatus }>): Promise<void> => {
    let report: { status: HealthStatus };
    try {
      report = await withTimeout(what, provider);
    } catch (e) {
      logger.warn({ err: e, endpoint: what }, 'health provider failed');
      const code = e instanceof QmpcError ? e.code : 'ERR_PROVIDER';
      replyJson(res, 503, { status: 'unhealthy', error: { code, message: (e as Error)?.message ?? String(e) } });
      return;
    }
    if (report === null || typeof report !== 'object' || !STATUSES.has(report.status)) {
      logger.error({ endpoint: what, status: (report as { status?: unknown } | null)?.status }, 'health provider returned a report without a valid status');
      replyJson(res, 503, { status: 'unhealthy', error: { code: 'ERR_BAD_REPORT', message: `${what} returned no valid status` } });
      return;
    }
    replyJson(res, report.status === 'unhealthy' ? 503 : 200, report);
  };

  const routes: Record<string, (res: ServerResponse) => Promise<void>> = {
    '/metrics': async (res) => {
      let text: string;
      try {
        text = await registry.metrics();
      } catch (e) {
        // A collect() callback threw; a partial exposition would mislead.
        logger.error({ err: e }, 'collecting metrics failed');
        reply(res, 500, 'collecting metrics failed\n', 'text/plain; charset=utf-8');
        return;
      }
      reply(res, 200, text, registry.contentType);
    },
    '/health': (res) => serveReport(res, '/health', deps.health),
    '/quantum/health': (res) => serveReport(res, '/quantum/health', deps.quantumHealth),
    '/security/status': (res) => serveReport(res, '/security/status', deps.securityStatus),
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // Bodies are never read; drain them so the connection can be reused.
    req.resume();
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      replyJson(res, 400, { error: { code: 'ERR_BAD_URL', message: 'request target is not a valid URL' } });
      return;
    }
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route) {
      replyJson(res, 404, { error: { code: 'ERR_NOT_FOUND', message: `no endpoint ${path}`, endpoints: Object.keys(routes) } });
      return;
    }
    // HEAD is GET without a body (node:http drops it), as HTTP requires.
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      replyJson(res, 405, { error: { code: 'ERR_METHOD', message: `${req.method} not allowed; use GET` } }, { allow: 'GET, HEAD' });
      return;
    }
    await route(res);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      logger.error({ err: e, url: req.url }, 'metrics request failed');
      if (!res.headersSent) replyJson(res, 500, { error: { code: 'ERR_INTERNAL', message: 'internal error' } });
      else res.destroy();
    });
  });
  // A scraper needs neither large headers nor slow uploads.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.maxHeadersCount = 64;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    logger.debug({ code: err.code, message: err.message }, 'malformed HTTP request');
    if (socket.writable && err.code !== 'ECONNRESET') {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    }
    socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      reject(new MetricsServerError(`metrics endpoint cannot listen on ${opts.host}:${opts.port} (metrics.host/metrics.port): ${e.code ?? e.message}`, e));
    };
    server.once('error', onError);
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (e) => logger.error({ err: e }, 'metrics server error'));

  const bound = server.address() as AddressInfo;
  const address = { host: bound.address, port: bound.port };
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  logger.info({ url }, 'metrics endpoint listening');
  if (!isLoopback(opts.host)) logger.warn({ host: opts.host }, 'metrics endpoint is reachable beyond loopback and has no authentication');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      deps.signal?.removeEventListener('abort', onAbort);
      server.close(() => resolve());
      // An in-flight scrape at shutdown is not worth waiting for.
      server.closeAllConnections();
    });
    return closing;
  };
  const onAbort = (): void => void close();
  if (deps.signal?.aborted) {
    // Aborted while binding.
    await close();
    deps.signal.throwIfAborted();
  }
  deps.signal?.addEventListener('abort', onAbort, { once: true });

  return { address, url, close };
}
