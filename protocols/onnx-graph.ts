/**
 * Builds small ONNX models in code, so the backends can generate exactly the
 * graph a shape needs instead of shipping .onnx files. Only the slice of the
 * format the engine uses: tensors in and out, nodes with scalar/list/string
 * attributes, and initializers stored as raw little-endian bytes (which keeps
 * 64-bit values exact; protobufjs would otherwise route them through `Long`).
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** ONNX TensorProto.DataType codes, by the names onnxruntime's JS API uses. */
export const ELEM_TYPE = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float64: 11,
  uint32: 12,
  uint64: 13,
} as const;
export type ElemType = keyof typeof ELEM_TYPE;

/** A fixed size, or a symbolic name shared by dimensions that must agree. */
export type Dim = number | string;

/** Integers and lists of integers become INT/INTS; wrap floats as `{ f }`. */
export type AttrValue = number | string | readonly number[] | { readonly f: number };

export const OPSET = 18;
export const IR_VERSION = 8;

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly inits: onnxProto.onnx.ITensorProto[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  input(name: string, type: ElemType, dims: readonly Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Declares `value` (an existing node output or input) as a graph output. */
  output(value: string, type: ElemType, dims: readonly Dim[]): void {
    this.outputs.push(valueInfo(value, type, dims));
  }

  /** Adds one single-output node and returns the name of its output. */
  node(opType: string, inputs: readonly string[], attrs: Readonly<Record<string, AttrValue>> = {}, out?: string): string {
    const output = out ?? `${opType.toLowerCase()}_${this.counter++}`;
    this.claim(output);
    this.nodes.push({
      opType,
      input: [...inputs],
      output: [output],
      name: output,
      attribute: Object.entries(attrs).map(([name, v]) => attribute(name, v)),
    });
    return output;
  }

  /** A constant tensor (a scalar when `dims` is empty) baked into the model. */
  constant(type: 'int64' | 'uint64' | 'float64', values: readonly (bigint | number)[], dims: readonly number[] = []): string {
    const name = `const_${this.counter++}`;
    this.claim(name);
    const raw = new Uint8Array(values.length * 8);
    const view = new DataView(raw.buffer);
    values.forEach((v, i) => {
      if (type === 'float64') view.setFloat64(i * 8, Number(v), true);
      else if (type === 'int64') view.setBigInt64(i * 8, BigInt(v), true);
      else view.setBigUint64(i * 8, BigInt(v), true);
    });
    this.inits.push({ name, dataType: ELEM_TYPE[type], dims: [...dims], rawData: raw });
    return name;
  }

  toBytes(graphName = 'qmpc'): Uint8Array {
    return onnx.ModelProto.encode({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'qmpc',
      graph: { name: graphName, node: this.nodes, input: this.inputs, output: this.outputs, initializer: this.inits },
    }).finish();
  }

  // ONNX requires every value to be produced exactly once (SSA); catching a
  // duplicate here gives a clearer message than the runtime's graph check.
  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`onnx-graph: value name ${name} defined twice`);
    this.names.add(name);
  }
}

function valueInfo(name: string, type: ElemType, dims: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new Error(`onnx-graph: attribute ${name}=${v} is not an integer; wrap floats as { f }`);
    return { name, type: T.INT, i: v };
  }
  if (isFloat(v)) return { name, type: T.FLOAT, f: v.f };
  return { name, type: T.INTS, ints: [...v] };
}

function isFloat(v: AttrValue): v is { readonly f: number } {
  return typeof v === 'object' && !Array.isArray(v) && 'f' in v;
}
