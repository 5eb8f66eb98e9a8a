/**
 * Frame size for bulk sends over @chainsafe/libp2p-yamux (8.x).
 *
 * A Yamux stream sends all the data its window allows as one frame, and the
 * receiving muxer hands a frame on only once the whole of it has arrived,
 * then returns that much credit. With a 16 MiB window that means 16 MiB
 * frames, and the two ends take turns: the receiver idles while the sender
 * encrypts the next frame, the sender idles until the credit for the last
 * one comes back. Frames of a quarter of the window keep credit flowing back
 * while the rest is in flight, so both ends work at once.
 *
 * The stream sets its chunk size (`maxMessageSize`, which its send loop reads
 * before each frame) from the window on every credit update; this caps what it
 * sets. A stream without that field is left as it is.
 */
import type { Stream } from '@libp2p/interface';

/** Caps the data per Yamux frame the stream sends; false when the stream is not one this knows. */
export function capFrameBytes(stream: Stream, maxBytes: number): boolean {
  const s = stream as unknown as { maxMessageSize?: unknown };
  const own = Object.getOwnPropertyDescriptor(s, 'maxMessageSize');
  if (typeof s.maxMessageSize !== 'number' || own === undefined || !('value' in own)) return false;
  let fromWindow = s.maxMessageSize;
  Object.defineProperty(s, 'maxMessageSize', {
    get: () => Math.min(fromWindow, maxBytes),
    set: (v: number) => {
      fromWindow = v;
    },
    configurable: true,
    enumerable: true,
  });
  return true;
}
