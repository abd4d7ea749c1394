import protobuf from 'protobufjs';

/**
 * Encoder for the subset of ONNX `ModelProto` needed to emit small inference graphs (see tiny-vit.ts), on
 * protobufjs's wire writer. Encode-only: we never parse ONNX here, onnxruntime does.
 *
 * Field numbers follow onnx/onnx.proto (proto2) / onnx.proto3; they were cross-checked by loading the
 * produced bytes in onnxruntime-node (test/annotate.test.ts). Repeated int64 fields are written packed;
 * protobuf parsers must accept packed and unpacked encodings for repeated scalars alike.
 */

/** TensorProto.DataType values we emit. */
export const TensorDataType = { FLOAT: 1, INT64: 7, FLOAT16: 10 } as const;
export type TensorDataTypeValue = (typeof TensorDataType)[keyof typeof TensorDataType];

/** AttributeProto.AttributeType values we emit. */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7 } as const;

export type OnnxAttribute =
  | { name: string; type: 'float'; value: number }
  | { name: string; type: 'int'; value: number | bigint }
  | { name: string; type: 'string'; value: string }
  | { name: string; type: 'ints'; value: ReadonlyArray<number | bigint> };

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attributes?: OnnxAttribute[];
}

/** A constant tensor; `data` is stored as little-endian raw_data. float16 data are half bit patterns (half.ts). */
export type OnnxTensor =
  | { name: string; dims: number[]; dataType: 'float32'; data: Float32Array }
  | { name: string; dims: number[]; dataType: 'float16'; data: Uint16Array }
  | { name: string; dims: number[]; dataType: 'int64'; data: BigInt64Array };

const TENSOR_TYPES = {
  float32: { code: TensorDataType.FLOAT, width: 4 },
  float16: { code: TensorDataType.FLOAT16, width: 2 },
  int64: { code: TensorDataType.INT64, width: 8 },
} as const;

/** A graph input/output; a string dimension is symbolic (dim_param), e.g. "batch". */
export interface OnnxValueInfo {
  name: string;
  elemType: TensorDataTypeValue;
  shape: Array<number | string>;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  producerName: string;
  opsetImports: Array<{ domain: string; version: number }>;
  graph: OnnxGraph;
}

/**
 * The field-level writer over protobufjs's Writer (the wire encoding: varints, two's-complement int64, fixed32
 * floats, length-delimited fields): this file only says which field each part of a model goes in, in order.
 */
class ProtoWriter {
  constructor(private readonly w: protobuf.Writer = protobuf.Writer.create()) {}

  private tag(field: number, wireType: number): void {
    this.w.uint32(((field << 3) | wireType) >>> 0);
  }

  int(field: number, value: number | bigint): void {
    this.tag(field, 0);
    this.w.int64(String(value));
  }

  float(field: number, value: number): void {
    this.tag(field, 5);
    this.w.float(value);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, 2);
    this.w.bytes(value);
  }

  string(field: number, value: string): void {
    this.tag(field, 2);
    this.w.string(value);
  }

  message(field: number, encode: (w: ProtoWriter) => void): void {
    this.tag(field, 2);
    this.w.fork();
    encode(this);
    this.w.ldelim();
  }

  packedInts(field: number, values: ReadonlyArray<number | bigint>): void {
    if (values.length === 0) return; // an empty packed field is simply omitted
    this.tag(field, 2);
    this.w.fork();
    for (const v of values) this.w.int64(String(v));
    this.w.ldelim();
  }

  finish(): Uint8Array {
    return this.w.finish();
  }
}

function encodeAttribute(w: ProtoWriter, a: OnnxAttribute): void {
  w.string(1, a.name);
  switch (a.type) {
    case 'float':
      w.float(2, a.value);
      w.int(20, AttributeType.FLOAT);
      break;
    case 'int':
      w.int(3, a.value);
      w.int(20, AttributeType.INT);
      break;
    case 'string':
      w.string(4, a.value);
      w.int(20, AttributeType.STRING);
      break;
    case 'ints':
      w.packedInts(8, a.value);
      w.int(20, AttributeType.INTS);
      break;
  }
}

function encodeNode(w: ProtoWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const a of n.attributes ?? []) w.message(5, (aw) => encodeAttribute(aw, a));
}

function encodeTensor(w: ProtoWriter, t: OnnxTensor): void {
  const expected = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== expected) {
    throw new Error(`tensor ${t.name}: ${t.data.length} values for dims [${t.dims.join(',')}]`);
  }
  w.packedInts(1, t.dims);
  const { code, width } = TENSOR_TYPES[t.dataType];
  w.int(2, code);
  w.string(8, t.name);
  // raw_data must be little-endian; copy through a DataView so host endianness never matters.
  const raw = new Uint8Array(t.data.length * width);
  const view = new DataView(raw.buffer);
  if (t.dataType === 'float32') t.data.forEach((v, i) => view.setFloat32(i * 4, v, true));
  else if (t.dataType === 'float16') t.data.forEach((v, i) => view.setUint16(i * 2, v, true));
  else t.data.forEach((v, i) => view.setBigInt64(i * 8, v, true));
  w.bytes(9, raw);
}

function encodeValueInfo(w: ProtoWriter, v: OnnxValueInfo): void {
  w.string(1, v.name);
  w.message(2, (typeProto) =>
    typeProto.message(1, (tensorType) => {
      tensorType.int(1, v.elemType);
      tensorType.message(2, (shape) => {
        for (const d of v.shape) {
          shape.message(1, (dim) => (typeof d === 'string' ? dim.string(2, d) : dim.int(1, d)));
        }
      });
    }),
  );
}

function encodeGraph(w: ProtoWriter, g: OnnxGraph): void {
  for (const n of g.nodes) w.message(1, (nw) => encodeNode(nw, n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, (tw) => encodeTensor(tw, t));
  for (const i of g.inputs) w.message(11, (iw) => encodeValueInfo(iw, i));
  for (const o of g.outputs) w.message(12, (ow) => encodeValueInfo(ow, o));
}

/** Serialise a ModelProto. Deterministic: the same model description always yields the same bytes. */
export function encodeModel(m: OnnxModel): Buffer {
  const w = new ProtoWriter();
  w.int(1, m.irVersion);
  w.string(2, m.producerName);
  w.message(7, (gw) => encodeGraph(gw, m.graph));
  for (const op of m.opsetImports) {
    w.message(8, (ow) => {
      if (op.domain) ow.string(1, op.domain);
      ow.int(2, op.version);
    });
  }
  return Buffer.from(w.finish());
}
