/**
 * Reused buffers for the sealed bytes a connection hands to its socket.
 *
 * A fresh buffer per sent chunk is fresh memory outside V8's heap: every
 * 64 MiB or so of it starts a full garbage collection, and where collections
 * are rarer the kernel zeroes each new page on first touch instead. Either way
 * the sender spent more CPU on it than on the cipher. A slab can be written
 * again once the socket has let go of it, and the connection can tell when:
 * bytes leave in the order they were handed over, so everything handed over,
 * less what still waits in the connection's queue and the socket's, has left.
 */

export interface WireQueue {
  /** Bytes handed to the connection that have not yet left for the kernel (its queue, the socket's buffer, a write in progress). */
  pendingBytes(): number;
}

/** Process-wide counts over all pools: slabs made, slabs written again, and one-off buffers taken when a pool was full. */
export const wireSlabStats = { made: 0, reused: 0, oneOff: 0 };

export class WireSlabs {
  private readonly free: Uint8Array[] = [];
  /** Slabs handed over, oldest first, with the handed-byte count at which the last of each is out. */
  private readonly inFlight: { slab: Uint8Array; end: number }[] = [];
  /** Every slab this pool made: only these come back to it. */
  private readonly owned = new WeakSet<Uint8Array>();
  private handed = 0;
  private slabs = 0;

  readonly slabBytes: number;
  private readonly maxSlabs: number;
  private readonly queue: WireQueue;

  constructor(slabBytes: number, maxSlabs: number, queue: WireQueue) {
    this.slabBytes = slabBytes;
    this.maxSlabs = maxSlabs;
    this.queue = queue;
  }

  /** A slabBytes buffer to fill: a released slab, a new one while under maxSlabs, else a one-off the collector takes back. */
  take(): Uint8Array {
    const slab = this.free.pop();
    if (slab !== undefined) {
      wireSlabStats.reused++;
      return slab;
    }
    if (this.slabs < this.maxSlabs) {
      this.slabs++;
      wireSlabStats.made++;
      const fresh = new Uint8Array(this.slabBytes);
      this.owned.add(fresh);
      return fresh;
    }
    wireSlabStats.oneOff++;
    return Buffer.allocUnsafe(this.slabBytes);
  }

  /**
   * Records bytes handed to the connection, in the order they go: `bytes` of
   * `buf` (a slab from take(), or any other buffer, which is only counted).
   * Bytes the connection gets without passing through here only hold slabs
   * back longer (they count as pending but not as handed).
   */
  hand(buf: Uint8Array, bytes: number): void {
    this.handed += bytes;
    if (this.owned.has(buf)) this.inFlight.push({ slab: buf, end: this.handed });
  }

  /** Slabs this pool owns, in flight or free. */
  get size(): number {
    return this.slabs;
  }

  /**
   * Frees the slabs whose bytes have all left. Call it only when everything
   * recorded by hand() is already in the connection's queue: a slab recorded
   * but not yet queued would look as if it had left.
   */
  reclaim(): void {
    // Bytes sent before the pool began (the handshake) may still be queued: they only make this smaller, never larger.
    const gone = this.handed - this.queue.pendingBytes();
    while (this.inFlight.length > 0 && this.inFlight[0].end <= gone) this.free.push(this.inFlight.shift()!.slab);
  }
}
