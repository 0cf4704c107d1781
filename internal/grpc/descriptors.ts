import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fromBinary, toBinary, type DescFile } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";

/** The descriptor set `npm run generate` writes with `buf build` (every file of proto/, with its imports and comments). */
export const DEFAULT_DESCRIPTOR_SET = resolve(import.meta.dirname, "../../gen/descriptor.binpb");

/** Reads a serialized google.protobuf.FileDescriptorSet (from `buf build -o x.binpb` or `protoc --descriptor_set_out --include_imports`). */
export function readDescriptorSet(path: string = DEFAULT_DESCRIPTOR_SET): FileDescriptorProto[] {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read the descriptor set ${path} (run \`npm run generate\`): ${(err as Error).message}`);
  }
  return fromBinary(FileDescriptorSetSchema, bytes).file;
}

interface Entry {
  proto: FileDescriptorProto;
  /** Serialized once; what reflection sends. */
  bytes: Uint8Array;
}

/**
 * An index over FileDescriptorProtos for server reflection: which file
 * declares a symbol, a file with everything it imports, extensions.
 *
 * Files are served as they came from the compiler (no regrouping by package,
 * unlike @grpc/reflection over a proto-loader definition), so `import`
 * statements and file names stay exactly as written, and comments in the
 * descriptor set show up in `grpcurl describe`.
 *
 * Only the files reachable from the served services (the files that declare
 * them and everything those import) are visible: a listener for the public
 * API does not describe the internal contracts that share the descriptor set.
 */
export class DescriptorPool {
  private readonly files = new Map<string, Entry>();
  private readonly symbols = new Map<string, Entry>();
  /** extendee full name -> field number -> file declaring the extension */
  private readonly extensions = new Map<string, Map<number, Entry>>();
  readonly services: readonly string[];

  /**
   * @param files every file available (for example a descriptor set plus the
   *   files of the reflection and health contracts); later duplicates of a
   *   file name are ignored
   * @param services fully-qualified names of the services the server serves
   */
  constructor(files: Iterable<FileDescriptorProto>, services: readonly string[]) {
    const all = new Map<string, FileDescriptorProto>();
    for (const f of files) if (!all.has(f.name)) all.set(f.name, f);

    const declaring = new Map<string, FileDescriptorProto>();
    for (const f of all.values()) {
      const prefix = f.package ? `${f.package}.` : "";
      for (const s of f.service) declaring.set(prefix + s.name, f);
    }
    const missing = services.filter((s) => !declaring.has(s));
    if (missing.length > 0) {
      throw new Error(`reflection: no descriptor declares ${missing.join(", ")} (is the descriptor set up to date? run \`npm run generate\`)`);
    }
    this.services = [...new Set(services)].sort();

    // Visible files: the files declaring the served services, transitively with their imports.
    const pending = this.services.map((s) => declaring.get(s)!);
    while (pending.length > 0) {
      const f = pending.pop()!;
      if (this.files.has(f.name)) continue;
      this.files.set(f.name, { proto: f, bytes: toBinary(FileDescriptorProtoSchema, f) });
      for (const dep of f.dependency) {
        const d = all.get(dep);
        if (!d) throw new Error(`reflection: ${f.name} imports ${dep}, which is not in the descriptor set (build it with its imports)`);
        pending.push(d);
      }
    }
    for (const entry of this.files.values()) this.indexFile(entry);
  }

  /** The file named `name` followed by everything it imports, transitively; undefined when not visible. */
  fileByName(name: string): Uint8Array[] | undefined {
    const entry = this.files.get(name);
    return entry && this.withDependencies(entry);
  }

  /** The file declaring a fully-qualified symbol (service, method, message, field, enum, enum value, extension) with its imports. */
  fileContainingSymbol(symbol: string): Uint8Array[] | undefined {
    const entry = this.symbols.get(symbol.replace(/^\./, ""));
    return entry && this.withDependencies(entry);
  }

  /** The file declaring extension `number` of `extendee`, with its imports. */
  fileContainingExtension(extendee: string, number: number): Uint8Array[] | undefined {
    const entry = this.extensions.get(extendee.replace(/^\./, ""))?.get(number);
    return entry && this.withDependencies(entry);
  }

  /** Field numbers of the known extensions of a message; undefined when the message is unknown. */
  extensionNumbers(extendee: string): number[] | undefined {
    const name = extendee.replace(/^\./, "");
    if (!this.symbols.has(name)) return undefined;
    return [...(this.extensions.get(name)?.keys() ?? [])].sort((a, b) => a - b);
  }

  private withDependencies(entry: Entry): Uint8Array[] {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (e: Entry) => {
      if (seen.has(e.proto.name)) return;
      seen.add(e.proto.name);
      out.push(e.bytes);
      for (const dep of e.proto.dependency) visit(this.files.get(dep)!);
    };
    visit(entry);
    return out;
  }

  private indexFile(entry: Entry): void {
    const f = entry.proto;
    const add = (name: string) => {
      if (!this.symbols.has(name)) this.symbols.set(name, entry);
    };
    const scope = f.package ? `${f.package}.` : "";
    const addExtensions = (prefix: string, exts: FieldDescriptorProto[]) => {
      for (const ext of exts) {
        add(prefix + ext.name);
        const extendee = ext.extendee.replace(/^\./, "");
        let byNumber = this.extensions.get(extendee);
        if (!byNumber) this.extensions.set(extendee, (byNumber = new Map()));
        if (!byNumber.has(ext.number)) byNumber.set(ext.number, entry);
      }
    };
    const addEnum = (prefix: string, e: EnumDescriptorProto) => {
      add(prefix + e.name);
      // Enum values are scoped like siblings of their enum (C++ scoping rules).
      for (const v of e.value) add(prefix + v.name);
    };
    const addMessage = (prefix: string, m: DescriptorProto) => {
      const name = prefix + m.name;
      add(name);
      for (const field of m.field) add(`${name}.${field.name}`);
      for (const oneof of m.oneofDecl) add(`${name}.${oneof.name}`);
      for (const nested of m.nestedType) addMessage(`${name}.`, nested);
      for (const e of m.enumType) addEnum(`${name}.`, e);
      addExtensions(`${name}.`, m.extension);
    };
    for (const m of f.messageType) addMessage(scope, m);
    for (const e of f.enumType) addEnum(scope, e);
    for (const s of f.service) {
      add(scope + s.name);
      for (const method of s.method) add(`${scope}${s.name}.${method.name}`);
    }
    addExtensions(scope, f.extension);
  }
}

/** FileDescriptorProtos of generated protobuf-es files and everything they import (for example the reflection and health contracts). */
export function filesOf(...files: DescFile[]): FileDescriptorProto[] {
  const out = new Map<string, FileDescriptorProto>();
  const visit = (f: DescFile) => {
    if (out.has(f.proto.name)) return;
    out.set(f.proto.name, f.proto);
    for (const dep of f.dependencies) visit(dep);
  };
  for (const f of files) visit(f);
  return [...out.values()];
}
