/**
 * This browser's records in IndexedDB (database "attache", one record under the key "this" in
 * each store). Store "device" holds the profile, the pinned authority keys or coalition policy (its founding
 * digest and latest verified version) and the private
 * keys sealed under the passphrase, and the server's audit key with the largest key directory
 * checkpoint verified (`transparency`, changed in one transaction so that it never goes
 * back): nothing unsealed is ever written, and nothing goes to
 * localStorage, a cookie or a URL. Store "audit" (version 2) holds what an auditor verified
 * here: the pinned audit key, the last checkpoint verified and its leaf hashes; all public.
 */
import type { AuditRecord, AuditStateStore } from "./audit.js";
import type { DeviceStore, StoredDevice } from "./device.js";

const DATABASE = "attache";
const VERSION = 2;
const STORES = ["device", "audit"] as const;
const KEY = "this";

function opened(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, VERSION);
    request.onupgradeneeded = () => {
      // From nothing, or from version 1 (the device store only): add what is missing.
      for (const name of STORES) {
        if (!request.result.objectStoreNames.contains(name)) request.result.createObjectStore(name);
      }
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB is unavailable"));
    request.onblocked = () => reject(new Error("close Attaché's other tabs, then reload"));
  });
}

async function transaction<T>(
  store: (typeof STORES)[number],
  mode: IDBTransactionMode,
  work: (store: IDBObjectStore) => IDBRequest,
): Promise<T> {
  const db = await opened();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(store, mode);
      const request = work(tx.objectStore(store));
      tx.oncomplete = () => resolve(request.result as T);
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB refused the change"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB refused the change"));
    });
  } finally {
    db.close();
  }
}

export const browserStore: DeviceStore = {
  async load(): Promise<StoredDevice | null> {
    const record = await transaction<StoredDevice | undefined>("device", "readonly", (s) =>
      s.get(KEY),
    );
    return record ?? null;
  },
  async save(record: StoredDevice): Promise<void> {
    // add, not put: a device once kept is never overwritten by another enrolment.
    await transaction("device", "readwrite", (s) => s.add(record, KEY));
  },
  async update(record: StoredDevice): Promise<void> {
    await transaction("device", "readwrite", (s) => s.put(record, KEY));
  },
  async change(change: (record: StoredDevice) => StoredDevice | null): Promise<void> {
    // One transaction: the record read, changed and written before another tab can write.
    const db = await opened();
    try {
      await new Promise<void>((resolve, reject) => {
        const tx = db.transaction("device", "readwrite");
        const store = tx.objectStore("device");
        const request = store.get(KEY);
        let failure: unknown = null;
        request.onsuccess = () => {
          const record = request.result as StoredDevice | undefined;
          try {
            if (record === undefined) throw new Error("this browser holds no device any more");
            const next = change(record);
            if (next !== null) store.put(next, KEY);
          } catch (error) {
            failure = error;
            tx.abort();
          }
        };
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(failure ?? tx.error ?? new Error("IndexedDB refused the change"));
        tx.onabort = () => reject(failure ?? tx.error ?? new Error("IndexedDB refused the change"));
      });
    } finally {
      db.close();
    }
  },
};

export const browserAuditStore: AuditStateStore = {
  async load(): Promise<AuditRecord | null> {
    const record = await transaction<AuditRecord | undefined>("audit", "readonly", (s) =>
      s.get(KEY),
    );
    return record ?? null;
  },
  async save(record: AuditRecord): Promise<void> {
    await transaction("audit", "readwrite", (s) => s.put(record, KEY));
  },
};
