// The three Reflect metadata calls tsyringe (a dependency of @peculiar/x509)
// needs, for when no `reflect-metadata` polyfill is loaded: metadata kept in a
// WeakMap per target, getMetadata walking the prototype chain. Import this
// module before @peculiar/x509.
type Target = object;
type Store = Map<unknown, unknown>;
const stores = new WeakMap<Target, Map<string | symbol | undefined, Store>>();

function store(target: Target, property: string | symbol | undefined, create: boolean): Store | undefined {
  let byProp = stores.get(target);
  if (!byProp) {
    if (!create) return undefined;
    byProp = new Map();
    stores.set(target, byProp);
  }
  let s = byProp.get(property);
  if (!s && create) {
    s = new Map();
    byProp.set(property, s);
  }
  return s;
}

interface MetadataReflect {
  getMetadata?: unknown;
  getOwnMetadata?: unknown;
  defineMetadata?: unknown;
}

const R = Reflect as unknown as MetadataReflect;
if (typeof R.getMetadata !== 'function') {
  const getOwn = (key: unknown, target: Target, property?: string | symbol): unknown => store(target, property, false)?.get(key);
  R.getOwnMetadata = getOwn;
  R.defineMetadata = (key: unknown, value: unknown, target: Target, property?: string | symbol): void => {
    store(target, property, true)!.set(key, value);
  };
  R.getMetadata = (key: unknown, target: Target, property?: string | symbol): unknown => {
    for (let t: Target | null = target; t !== null; t = Object.getPrototypeOf(t) as Target | null) {
      const s = store(t, property, false);
      if (s?.has(key)) return s.get(key);
    }
    return undefined;
  };
}
export {};
