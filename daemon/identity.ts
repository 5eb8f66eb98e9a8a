/**
 * The party's persistent libp2p identity: an Ed25519 key in a 0600 file
 * (libp2p's protobuf encoding), created by `qmpc keygen` or on first start.
 * A key file that others can read is refused rather than silently used: a
 * leaked identity lets anyone impersonate the party to its peers.
 */
import { chmodSync, mkdirSync, openSync, readFileSync, statSync, writeSync, closeSync, fsyncSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { IdentityError } from './errors.ts';

export interface Identity {
  privateKey: PrivateKey;
  peerId: string;
  file: string;
}

export async function generateIdentityFile(file: string, { force = false } = {}): Promise<Identity> {
  if (!force) {
    try {
      statSync(file);
      throw new IdentityError(`key file ${file} already exists (use --force to replace it; the party's peer id would change)`);
    } catch (e) {
      if (e instanceof IdentityError) throw e;
    }
  }
  const key = await generateKeyPair('Ed25519');
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // Written under a temporary name with 0600 from the first byte, then renamed: never a moment with looser permissions or half a key.
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, privateKeyToProtobuf(key));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return { privateKey: key, peerId: peerIdFromPrivateKey(key).toString(), file };
}

export function loadIdentityFile(file: string): Identity {
  let st;
  try {
    st = statSync(file);
  } catch (e) {
    throw new IdentityError(`cannot read key file ${file}: ${(e as NodeJS.ErrnoException).code}`, e);
  }
  if (!st.isFile()) throw new IdentityError(`key file ${file} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new IdentityError(`key file ${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 600 ${file}`);
  }
  let key: PrivateKey;
  try {
    key = privateKeyFromProtobuf(readFileSync(file));
  } catch (e) {
    throw new IdentityError(`key file ${file} does not hold a libp2p private key (${(e as Error).message})`, e);
  }
  if (key.type !== 'Ed25519') throw new IdentityError(`key file ${file} holds a ${key.type} key; qmpc parties use Ed25519`);
  return { privateKey: key, peerId: peerIdFromPrivateKey(key).toString(), file };
}

/** Loads the key, or creates it when the file does not exist yet (first start). */
export async function loadOrCreateIdentity(file: string): Promise<Identity & { created: boolean }> {
  try {
    statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ...(await generateIdentityFile(file)), created: true };
  }
  return { ...loadIdentityFile(file), created: false };
}
