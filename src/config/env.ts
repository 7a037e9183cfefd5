// Environment overrides: QUORATE_<SECTION>_<KEY>[_<KEY>...] sets one key of
// the file. Section and key names match case-insensitively (keys hold no "_").
// A variable whose <SECTION> is not a config section (QUORATE_URL,
// QUORATE_TOKEN: the CLI's own) is ignored; a known section with an unknown
// key is an error naming the variable.
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { configSchema } from './schema.js';

export interface AppliedOverride {
  /** Dotted key path, e.g. "cluster.electionTimeoutMs". */
  readonly path: string;
  readonly variable: string;
}

const PREFIX = 'QUORATE_';

/** Applies overrides to a copy of `file`; returns it and which paths came from which variable. */
export function applyEnvOverrides(file: Record<string, unknown>, env: NodeJS.ProcessEnv): { merged: Record<string, unknown>; applied: AppliedOverride[] } {
  const merged = structuredClone(file);
  const applied: AppliedOverride[] = [];
  const sections = configSchema.shape;
  const names = Object.keys(env).filter((n) => n.toUpperCase().startsWith(PREFIX)).sort();
  for (const variable of names) {
    const raw = env[variable];
    if (raw === undefined) continue;
    const parts = variable.slice(PREFIX.length).split('_');
    const sectionKey = matchKey(Object.keys(sections), parts[0] ?? '');
    if (sectionKey === undefined) continue; // not ours (QUORATE_URL, QUORATE_TOKEN, ...)
    const path: string[] = [sectionKey];
    let schema: z.ZodTypeAny = unwrap(sections[sectionKey as keyof typeof sections]);
    const rest = parts.slice(1);
    if (rest.length === 0 || rest.some((p) => p === '')) {
      throw new ConfigError([{ path: '', message: `${variable}: name a key, as in QUORATE_${sectionKey.toUpperCase()}_<KEY> (keys: ${Object.keys(shapeOf(schema)).join(', ')})` }]);
    }
    for (const part of rest) {
      const shape = shapeOf(schema);
      const key = matchKey(Object.keys(shape), part);
      if (key === undefined) {
        const where = path.join('.');
        const keys = Object.keys(shape);
        throw new ConfigError([{ path: '', message: `${variable}: unknown key "${part}" in ${where}${keys.length > 0 ? ` (keys: ${keys.join(', ')})` : ' (not an object)'}` }]);
      }
      path.push(key);
      schema = unwrap(shape[key]!);
    }
    const value = coerce(raw, schema, variable);
    setAt(merged, path, value);
    applied.push({ path: path.join('.'), variable });
  }
  return { merged, applied };
}

function matchKey(keys: string[], name: string): string | undefined {
  const lower = name.toLowerCase();
  return keys.find((k) => k.toLowerCase() === lower);
}

function unwrap(schema: z.ZodTypeAny): z.ZodTypeAny {
  let s = schema;
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s._def.innerType as z.ZodTypeAny;
    else if (s instanceof z.ZodEffects) s = s._def.schema as z.ZodTypeAny;
    else return s;
  }
}

function shapeOf(schema: z.ZodTypeAny): Record<string, z.ZodTypeAny> {
  return schema instanceof z.ZodObject ? (schema.shape as Record<string, z.ZodTypeAny>) : {};
}

function coerce(raw: string, schema: z.ZodTypeAny, variable: string): unknown {
  const text = raw.trim();
  if (schema instanceof z.ZodNumber) {
    if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
      throw new ConfigError([{ path: '', message: `${variable}: expected a number, got ${JSON.stringify(raw)}` }]);
    }
    return Number(text);
  }
  if (schema instanceof z.ZodBoolean) {
    const t = text.toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(t)) return true;
    if (['false', '0', 'no', 'off'].includes(t)) return false;
    throw new ConfigError([{ path: '', message: `${variable}: expected true or false, got ${JSON.stringify(raw)}` }]);
  }
  if (schema instanceof z.ZodArray) {
    if (text.startsWith('[')) return parseJson(text, variable);
    return text === '' ? [] : text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  }
  if (schema instanceof z.ZodObject) return parseJson(text, variable);
  if (schema instanceof z.ZodUnion && text.startsWith('{')) return parseJson(text, variable);
  return raw;
}

function parseJson(text: string, variable: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError([{ path: '', message: `${variable}: not valid JSON (${(err as Error).message})` }], { cause: err });
  }
}

function setAt(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur: Record<string, unknown> = obj;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i]!;
    const next = cur[k];
    if (next === undefined) {
      const created: Record<string, unknown> = {};
      cur[k] = created;
      cur = created;
    } else if (typeof next === 'object' && next !== null && !Array.isArray(next)) {
      cur = next as Record<string, unknown>;
    } else {
      return; // the file has a wrong type here; the schema reports it by path
    }
  }
  cur[path[path.length - 1]!] = value;
}
