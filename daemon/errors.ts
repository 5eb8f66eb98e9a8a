/**
 * Daemon errors: one class per kind with a stable `code`, and the process exit
 * code the CLI maps it to (sysexits.h values, so scripts can tell a bad config
 * from a busy state directory).
 */
export { QmpcError } from '../protocols/errors.ts';
import { QmpcError } from '../protocols/errors.ts';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 64, // EX_USAGE: bad command line
  dataErr: 65, // EX_DATAERR: bad input data
  unavailable: 69, // EX_UNAVAILABLE: a peer or service is not there
  software: 70, // EX_SOFTWARE: internal error
  cantCreat: 73, // EX_CANTCREAT: cannot create a file or socket
  ioErr: 74, // EX_IOERR
  tempFail: 75, // EX_TEMPFAIL: try again (e.g. state directory in use)
  noPerm: 77, // EX_NOPERM
  config: 78, // EX_CONFIG: bad configuration
} as const;

/** A configuration value that is missing, of the wrong type or out of range; names the key path. */
export class ConfigError extends QmpcError {
  readonly exitCode = EXIT.config;
  constructor(message: string) {
    super('ERR_CONFIG', message);
  }
}

/** Command-line misuse. */
export class UsageError extends QmpcError {
  readonly exitCode = EXIT.usage;
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** The state directory's database is held by another daemon. */
export class StoreLockedError extends QmpcError {
  readonly exitCode = EXIT.tempFail;
  constructor(message: string, cause?: unknown) {
    super('ERR_STORE_LOCKED', message, { cause });
  }
}

/** Anything else the store cannot do (corrupt data, I/O). */
export class StoreError extends QmpcError {
  readonly exitCode = EXIT.ioErr;
  constructor(message: string, cause?: unknown) {
    super('ERR_STORE', message, { cause });
  }
}

/** A key file that cannot be read, is malformed, or is readable by others. */
export class IdentityError extends QmpcError {
  readonly exitCode = EXIT.noPerm;
  constructor(message: string, cause?: unknown) {
    super('ERR_IDENTITY', message, { cause });
  }
}

/** The admin socket cannot be bound (e.g. another live daemon owns it). */
export class AdminSocketError extends QmpcError {
  readonly exitCode = EXIT.cantCreat;
  constructor(message: string, cause?: unknown) {
    super('ERR_ADMIN_SOCKET', message, { cause });
  }
}

export function exitCodeOf(e: unknown): number {
  if (e && typeof e === 'object' && 'exitCode' in e && typeof e.exitCode === 'number') return e.exitCode;
  return EXIT.failure;
}
