/**
 * Wire constants of the party network: protocol ids and the MPC frame layout.
 * Changing the frame layout incompatibly means a new FRAME_VERSION (peers
 * refuse frames of another version); changing what a stream carries means a
 * new protocol major.
 */

/** Committee-only: the engine's session messages between the three parties. */
export const MPC_PROTOCOL = '/qmpc/mpc/1';
/** Clients submitting jobs (handled elsewhere; listed so the node can tell it apart from MPC). */
export const JOB_PROTOCOL = '/qmpc/job/1';

/** Session ids are 128-bit random values chosen by the job layer. */
export const SESSION_ID_BYTES = 16;

/**
 * Frame layout (big-endian):
 *
 *   offset  size  field
 *   0       4     length: bytes that follow this field (header rest + payload)
 *   4       1     version (FRAME_VERSION)
 *   5       1     kind (FRAME_KIND)
 *   6       2     flags (none defined in version 1: must be 0)
 *   8       16    session id
 *   24      4     seq: per session and direction, the index of this data frame;
 *                 in a close frame, the number of data frames sent before it
 *   28      …     payload
 */
export const FRAME_LENGTH_BYTES = 4;
export const FRAME_HEADER_BYTES = 28;
export const FRAME_VERSION = 1;

export const FRAME_KIND = Object.freeze({
  /** One engine message. */
  data: 1,
  /** The sender closed the session; payload: UTF-8 reason. */
  close: 2,
} as const);
export type FrameKind = (typeof FRAME_KIND)[keyof typeof FRAME_KIND];

/**
 * Default bound on one whole frame, length prefix included: a 64 MiB engine
 * message plus its header (with room to spare). Checked against the length
 * prefix before anything is buffered.
 */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024 + 64;
/** Smallest configurable bound: a frame must at least hold its header and a useful payload. */
export const MIN_MAX_FRAME_BYTES = 1024;

/** Close reasons are for logs, not data: longer ones are cut (sender) or refused (receiver). */
export const MAX_CLOSE_REASON_BYTES = 256;
