/**
 * Admin socket options and their defaults (the CLI and the YAML loader take
 * defaults from here). The socket is a local Unix stream socket speaking one
 * JSON request per line and one JSON reply per line, after Ceph's admin socket.
 */
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';

export interface AdminOptions {
  /**
   * Socket path from the config (`admin.socket`). `null` means "derive it":
   * `$RUNTIME_DIRECTORY/admin.sock` under systemd (see resolveAdminSocketPath).
   */
  socket: string | null;
  /** Permission bits applied after bind; 0660 lets the daemon's group (operators) connect, nobody else. */
  mode: number;
  /** Longest request line in bytes; a longer one gets an error reply and the connection is closed. */
  maxLineBytes: number;
  /** A connection with no traffic and no request in progress for this long is closed. */
  idleTimeoutMs: number;
  /** Concurrent connections; a local tool never needs many, and each costs a descriptor. */
  maxConnections: number;
  /**
   * Requests read ahead of the one being handled on a connection; past this the
   * server stops reading from that client until it catches up, so a client that
   * pipelines without reading replies cannot grow our memory without bound.
   */
  maxPipelined: number;
}

export const ADMIN_DEFAULTS: Readonly<AdminOptions> = Object.freeze({
  socket: null,
  mode: 0o660,
  maxLineBytes: 64 * 1024,
  idleTimeoutMs: 60_000,
  maxConnections: 64,
  maxPipelined: 64,
});

export const ADMIN_SOCKET_NAME = 'admin.sock';

/** sun_path is 108 bytes on Linux, including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * The admin socket path: an explicit `admin.socket` wins (an operator who
 * writes one means it); otherwise `$RUNTIME_DIRECTORY/admin.sock`, which
 * systemd sets from `RuntimeDirectory=` and removes when the unit stops.
 * systemd joins several runtime directories with ':'; the first is ours.
 */
export function resolveAdminSocketPath(configured: string | null | undefined, env: NodeJS.ProcessEnv = process.env): string {
  let path: string;
  if (configured != null && configured !== '') {
    path = configured;
  } else {
    const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
    if (!runtime) {
      throw new ConfigError(
        'admin.socket: expected a socket path (or RUNTIME_DIRECTORY set by systemd RuntimeDirectory=), found neither',
      );
    }
    path = join(runtime, ADMIN_SOCKET_NAME);
  }
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new ConfigError(
      `admin.socket: expected a path of at most ${MAX_SOCKET_PATH_BYTES} bytes (the Unix socket limit), found ${bytes} bytes: ${path}`,
    );
  }
  return path;
}
