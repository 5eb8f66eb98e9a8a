/**
 * Picks a compute backend from configuration. ONNX Runtime is loaded only when
 * asked for, so the reference backend works without the native addon.
 */
import type { ComputeBackend } from './backend.ts';
import { JsBackend } from './backend-js.ts';
import type { OrtBackendOptions } from './backend-ort.ts';
import { BackendError } from './errors.ts';

export type BackendKind = 'js' | 'ort';
export const BACKEND_KINDS: readonly BackendKind[] = ['js', 'ort'];

export interface BackendOptions extends OrtBackendOptions {
  kind: BackendKind;
}

export async function createBackend(opts: BackendOptions): Promise<ComputeBackend> {
  switch (opts.kind) {
    case 'js':
      return new JsBackend();
    case 'ort': {
      const { kind: _kind, ...ortOpts } = opts;
      const { OrtBackend } = await import('./backend-ort.ts');
      return OrtBackend.create(ortOpts);
    }
    default:
      throw new BackendError(`unknown backend kind ${JSON.stringify((opts as { kind: unknown }).kind)}; expected one of ${BACKEND_KINDS.join(', ')}`);
  }
}
