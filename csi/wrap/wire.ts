/**
 * Protocol buffers at the wire level: a message as the list of its fields, each kept as the
 * exact bytes it arrived in. The wrapper forwards messages this way, so that everything it
 * does not deliberately change — fields of a newer CSI spec than cloak's csi.proto, fields it
 * has no reason to decode, map entries in their order — reaches the other side byte for byte.
 * (Decoding into objects and encoding again, as proto-loader does, drops unknown fields.)
 */

export const WIRE = { varint: 0, i64: 1, len: 2, i32: 5 } as const;

export interface WireField {
  readonly number: number;
  readonly wireType: number;
  /** The whole field as encoded: tag and value. */
  readonly encoded: Buffer;
  /** A length-delimited field's content. */
  readonly payload?: Buffer;
  /** A varint field's value. */
  readonly value?: bigint;
}

/** Splits a message into its fields; throws on malformed input (truncated, bad wire type). */
export function parseFields(bytes: Buffer): WireField[] {
  const fields: WireField[] = [];
  let at = 0;
  while (at < bytes.length) {
    const start = at;
    const [tag, afterTag] = readVarint(bytes, at);
    at = afterTag;
    const number = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    if (number === 0) throw new Error("protobuf: field number 0");
    switch (wireType) {
      case WIRE.varint: {
        const [value, next] = readVarint(bytes, at);
        at = next;
        fields.push({ number, wireType, encoded: bytes.subarray(start, at), value });
        break;
      }
      case WIRE.i64:
        at = need(bytes, at, 8);
        fields.push({ number, wireType, encoded: bytes.subarray(start, at) });
        break;
      case WIRE.i32:
        at = need(bytes, at, 4);
        fields.push({ number, wireType, encoded: bytes.subarray(start, at) });
        break;
      case WIRE.len: {
        const [length, next] = readVarint(bytes, at);
        const end = need(bytes, next, Number(length));
        fields.push({ number, wireType, encoded: bytes.subarray(start, end), payload: bytes.subarray(next, end) });
        at = end;
        break;
      }
      default:
        // Groups (3, 4) are proto2-only and not in CSI.
        throw new Error(`protobuf: unsupported wire type ${wireType} for field ${number}`);
    }
  }
  return fields;
}

export function joinFields(fields: readonly WireField[]): Buffer {
  return Buffer.concat(fields.map((f) => f.encoded));
}

export function lenField(number: number, payload: Buffer): WireField {
  const encoded = Buffer.concat([varint(BigInt((number << 3) | WIRE.len)), varint(BigInt(payload.length)), payload]);
  return { number, wireType: WIRE.len, encoded, payload };
}

/** int64/uint64/bool as a varint; negative values in two's complement, as protobuf does. */
export function varintField(number: number, value: bigint): WireField {
  const unsigned = value < 0n ? value + (1n << 64n) : value;
  return { number, wireType: WIRE.varint, encoded: Buffer.concat([varint(BigInt((number << 3) | WIRE.varint)), varint(unsigned)]), value };
}

/** A varint field's value read as int64. */
export function int64Of(field: WireField): bigint {
  const value = field.value ?? 0n;
  return value >= 1n << 63n ? value - (1n << 64n) : value;
}

/** An entry of a map<string, string> field: a message with key = 1 and value = 2. */
export function stringMapEntry(number: number, key: string, value: string): WireField {
  return lenField(number, Buffer.concat([lenField(1, Buffer.from(key)).encoded, lenField(2, Buffer.from(value)).encoded]));
}

/** The key of a map entry (of a map with string keys). */
export function mapEntryKey(field: WireField): string {
  const key = parseFields(field.payload ?? Buffer.alloc(0)).findLast((f) => f.number === 1);
  return key?.payload?.toString("utf8") ?? "";
}

function varint(value: bigint): Buffer {
  const out: number[] = [];
  let v = value;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

function readVarint(bytes: Buffer, from: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (let at = from; at < bytes.length && shift < 70n; at++) {
    const byte = bytes[at] ?? 0;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [value & ((1n << 64n) - 1n), at + 1];
    shift += 7n;
  }
  throw new Error("protobuf: truncated or overlong varint");
}

function need(bytes: Buffer, at: number, length: number): number {
  if (length < 0 || at + length > bytes.length) throw new Error("protobuf: truncated field");
  return at + length;
}
