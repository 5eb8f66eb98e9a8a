/**
 * Where sodium-native cannot load, Noise falls back to node:crypto with the
 * same wire format. QMPC_NOISE_CIPHER=node forces that path in this process
 * (set before the network modules load, which pick the cipher once).
 */
import tap from 'tap';
const t = tap;
process.env.QMPC_NOISE_CIPHER = 'node';
const { noiseCipher } = await import('../daemon/network/fast-noise.ts');
const { checkStockInterop, checkTamperingRefused, checkWireSlabsReused } = await import('./helpers/noise-wire.ts');

t.test('the fallback is in use and says why', async (t) => {
  t.equal(noiseCipher.impl, 'node:crypto');
  t.equal(noiseCipher.reason, 'QMPC_NOISE_CIPHER=node');
});

t.test('on node:crypto, a party node and a stock libp2p peer still talk standard Noise, with no plaintext on the wire', (t) => checkStockInterop(t));

t.test('on node:crypto, a flipped bit is refused and the connection dropped', (t) => checkTamperingRefused(t));

t.test('on node:crypto, sealed output still goes out through reused wire slabs, intact', (t) => checkWireSlabsReused(t));
