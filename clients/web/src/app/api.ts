/**
 * The Attaché API from the page: JSON over fetch to this page's own origin (the policy's
 * connect-src allows no other), errors as the server's RFC 9457 problem details. The session
 * token lives in this object alone, in memory: never in storage, a cookie or a URL, so closing
 * or reloading the page ends it.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Record<string, unknown>,
  ) {
    const detail = problem.detail ?? problem.title;
    super(typeof detail === "string" && detail ? detail : `the server answered HTTP ${status}`);
  }

  /** The problem's stable code ("roster-changed", "audience-incomplete"), if any. */
  get code(): string | null {
    return typeof this.problem.code === "string" ? this.problem.code : null;
  }
}

export class ConnectionFailed extends Error {}

/**
 * One URL path segment made of a name or id, as the SDK's `_segment`: percent-encoded, so a
 * "/" or "?" in it stays inside it, and refused before anything is sent when it is empty (it
 * would name the collection instead) or "." or "..", which encoding leaves as they are and a
 * URL resolves away (RFC 3986 §5.2.4: a channel ".." would ask for another route). No name or
 * id the server gives out is any of these. For path segments only: a query's values are
 * encodeURIComponent's.
 */
export function segment(value: string): string {
  if (value === "") throw new Error("an empty name or id names nothing: give one");
  if (value === "." || value === "..") {
    throw new Error(`"${value}" is not a name or id: a URL would resolve it away`);
  }
  return encodeURIComponent(value);
}

export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

export class Api {
  #token: string | null = null;

  /** `origin`: the server (this page's origin in the browser); `fetcher`: for tests. */
  constructor(
    readonly origin: string,
    private readonly fetcher: Fetch = (input, init) => fetch(input, init),
  ) {}

  get signedIn(): boolean {
    return this.#token !== null;
  }

  /** The token, for the stream's first frame (§17.7) only: it is sent nowhere else. */
  get token(): string | null {
    return this.#token;
  }

  setToken(token: string | null): void {
    this.#token = token;
  }

  /**
   * `GET path` as a stream of bytes (a document's ciphertext), read as it arrives: never held
   * whole. Errors before the body are the server's problem details, as for `request`.
   */
  async stream(path: string): Promise<ReadableStream<Uint8Array>> {
    const headers: Record<string, string> = { Accept: "application/octet-stream" };
    if (this.#token !== null) headers.Authorization = `Bearer ${this.#token}`;
    let response: Response;
    try {
      response = await this.fetcher(`${this.origin}${path}`, {
        method: "GET",
        headers,
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      throw new ConnectionFailed(`cannot reach the server at ${this.origin}: ${String(error)}`);
    }
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    if (response.body === null) throw new ConnectionFailed("the server sent no content");
    return response.body;
  }

  /**
   * `PUT path` with `bytes` as the raw body (application/octet-stream: a piece of a
   * document's ciphertext), answered with JSON. The caller bounds the piece's size.
   */
  async putBytes<T>(path: string, bytes: Uint8Array): Promise<T> {
    const headers: Record<string, string> = {
      Accept: "application/json",
      "Content-Type": "application/octet-stream",
    };
    if (this.#token !== null) headers.Authorization = `Bearer ${this.#token}`;
    let response: Response;
    try {
      response = await this.fetcher(`${this.origin}${path}`, {
        method: "PUT",
        headers,
        body: bytes as Uint8Array<ArrayBuffer>,
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      throw new ConnectionFailed(`cannot reach the server at ${this.origin}: ${String(error)}`);
    }
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    return (await response.json()) as T;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.exchange<T>(method, path, { body })).body as T;
  }

  /**
   * A request with extra headers (If-None-Match, If-Match), answered with its status and
   * headers too. 304 Not Modified is an answer, not an error: its body is undefined.
   */
  async exchange<T>(
    method: string,
    path: string,
    { body, headers: extra = {} }: { body?: unknown; headers?: Record<string, string> },
  ): Promise<{ status: number; headers: Headers; body: T | undefined }> {
    const headers: Record<string, string> = { Accept: "application/json", ...extra };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.#token !== null) headers.Authorization = `Bearer ${this.#token}`;
    let response: Response;
    try {
      response = await this.fetcher(`${this.origin}${path}`, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      throw new ConnectionFailed(`cannot reach the server at ${this.origin}: ${String(error)}`);
    }
    if (response.status === 304) {
      return { status: 304, headers: response.headers, body: undefined };
    }
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    const answer = response.status === 204 ? undefined : ((await response.json()) as T);
    return { status: response.status, headers: response.headers, body: answer };
  }
}

/** A failed answer's RFC 9457 problem details, or a plain one when its body is not JSON. */
async function problemOf(response: Response): Promise<Record<string, unknown>> {
  let problem: unknown;
  try {
    problem = await response.json();
  } catch {
    problem = { detail: `the server answered HTTP ${response.status}` };
  }
  return typeof problem === "object" && problem !== null && !Array.isArray(problem)
    ? (problem as Record<string, unknown>)
    : { detail: String(problem) };
}
