/**
 * Engine errors: one class per kind, each with a stable machine-readable `code`
 * so callers (the daemon, the CLI, tests) can branch without parsing messages.
 */
export class QmpcError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Tensor shapes that do not fit the operation (elementwise, matmul, reshape, …). */
export class ShapeError extends QmpcError {
  constructor(message: string) {
    super('ERR_SHAPE', message);
  }
}

/** A party index, party count or share layout that does not describe a 3-party session. */
export class PartyError extends QmpcError {
  constructor(message: string) {
    super('ERR_PARTY', message);
  }
}

/** A receive on a session that has been closed (locally or by the peer), or a send after close. */
export class SessionClosedError extends QmpcError {
  constructor(message: string) {
    super('ERR_SESSION_CLOSED', message);
  }
}

/** A network wait that exceeded its deadline. */
export class TimeoutError extends QmpcError {
  constructor(message: string) {
    super('ERR_TIMEOUT', message);
  }
}

/** The caller's AbortSignal fired. */
export class AbortedError extends QmpcError {
  constructor(message: string, cause?: unknown) {
    super('ERR_ABORTED', message, { cause });
  }
}

/** A message from a peer that does not have the size or form the protocol step expects. */
export class ProtocolError extends QmpcError {
  constructor(message: string) {
    super('ERR_PROTOCOL', message);
  }
}

/** A compute backend that cannot be created or failed to run. */
export class BackendError extends QmpcError {
  constructor(message: string, cause?: unknown) {
    super('ERR_BACKEND', message, { cause });
  }
}

/** A value outside what the encoding or function can represent (fixed-point overflow, bad parameters). */
export class RangeError64 extends QmpcError {
  constructor(message: string) {
    super('ERR_RANGE', message);
  }
}
