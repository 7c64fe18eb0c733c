/**
 * This browser's device record in IndexedDB (database "attache", store "device", one record
 * under the key "this"). It holds the profile, the pinned authority keys and the private keys
 * sealed under the passphrase: nothing unsealed is ever written, and nothing goes to
 * localStorage, a cookie or a URL.
 */
import type { DeviceStore, StoredDevice } from "./device.js";

const DATABASE = "attache";
const STORE = "device";
const KEY = "this";

function opened(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(STORE);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB is unavailable"));
    request.onblocked = () => reject(new Error("close Attaché's other tabs, then reload"));
  });
}

async function transaction<T>(
  mode: IDBTransactionMode,
  work: (store: IDBObjectStore) => IDBRequest,
): Promise<T> {
  const db = await opened();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = work(tx.objectStore(STORE));
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
    const record = await transaction<StoredDevice | undefined>("readonly", (s) => s.get(KEY));
    return record ?? null;
  },
  async save(record: StoredDevice): Promise<void> {
    // add, not put: a device once kept is never overwritten by another enrolment.
    await transaction("readwrite", (s) => s.add(record, KEY));
  },
};
