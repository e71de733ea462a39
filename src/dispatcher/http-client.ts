// HTTP delivery with undici: one Agent per delivery loop (a keep-alive connection pool per
// origin), a per-attempt timeout, and a result the outcome table classifies. Bodies are read
// only as far as needed: a reply (when replies are on) up to MAX_REPLY_BYTES, the start of an
// error body for the dead letter, and nothing otherwise (dumped so the connection is reused).
import { Agent, type Dispatcher } from 'undici';
import { setLongTimeout } from '../util/timers.ts';
import type { AttemptResult } from './outcome.ts';
import { MAX_ERROR_DATA } from './dead-letter.ts';

/** Largest reply body read; a larger one is ignored (treated as no reply). */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;

export interface PostOptions {
  readonly timeoutMs: number;
  /** aborts the attempt (shutdown after the grace period) */
  readonly signal?: AbortSignal | undefined;
  /** read a 2xx body (for replies) */
  readonly wantReply: boolean;
}

export interface PostResult {
  readonly result: AttemptResult;
  /** 2xx with wantReply: the response, when its body fit */
  readonly reply?: { readonly headers: Record<string, string>; readonly body: Uint8Array };
  /** the attempt was aborted by `signal` (not a timeout) */
  readonly aborted: boolean;
}

const decoder = new TextDecoder();

function headerRecord(raw: Dispatcher.ResponseData['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

async function readUpTo(
  body: Dispatcher.ResponseData['body'],
  limit: number,
): Promise<{ bytes: Uint8Array; complete: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      return { bytes: Buffer.concat(chunks).subarray(0, limit), complete: false };
    }
  }
  return { bytes: Buffer.concat(chunks), complete: true };
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  const code = (err as { code?: unknown }).code;
  return `${typeof code === 'string' ? `${code} ` : ''}${err.message}${cause}`;
}

export class SinkClient {
  readonly #agent: Agent;
  /** the last URI posted to, parsed (a worker posts to one sink) */
  #target: { uri: string; origin: string; path: string } | undefined;

  constructor(opts: { connections: number; keepAliveMs?: number }) {
    this.#agent = new Agent({
      connections: opts.connections,
      keepAliveTimeout: opts.keepAliveMs ?? 30_000,
      keepAliveMaxTimeout: 600_000,
      pipelining: 1,
    });
  }

  async post(
    uri: string,
    headers: Record<string, string>,
    body: Uint8Array,
    opts: PostOptions,
  ): Promise<PostResult> {
    // one controller per attempt, aborted by the timer or by the caller's signal (cheaper
    // than AbortSignal.timeout + AbortSignal.any per request); the timer is safe past Node's
    // 2^31-1 ms limit (a timeout of 600h must not fire after 1 ms)
    const ctl = new AbortController();
    const state = { timedOut: false };
    const timer = setLongTimeout(() => {
      state.timedOut = true;
      ctl.abort();
    }, opts.timeoutMs);
    const onAbort = () => {
      ctl.abort();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // a URI undici cannot use fails the attempt like a connection error, naming the URI
      const target = this.#targetOf(uri);
      const res = await this.#agent.request({
        origin: target.origin,
        path: target.path,
        method: 'POST',
        headers,
        body,
        signal: ctl.signal,
        headersTimeout: opts.timeoutMs + 1000,
        bodyTimeout: opts.timeoutMs + 1000,
      });
      return await this.#readResponse(res, opts);
    } catch (err) {
      if (state.timedOut) {
        return { result: { kind: 'timeout', timeoutMs: opts.timeoutMs }, aborted: false };
      }
      if (opts.signal?.aborted === true) {
        return { result: { kind: 'connection-error', message: 'aborted' }, aborted: true };
      }
      return { result: { kind: 'connection-error', message: describeError(err) }, aborted: false };
    } finally {
      timer.clear();
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  #targetOf(uri: string): { uri: string; origin: string; path: string } {
    if (this.#target?.uri !== uri) {
      if (!URL.canParse(uri)) throw new Error(`the sink URI ${JSON.stringify(uri)} is not a URL`);
      const url = new URL(uri);
      this.#target = { uri, origin: url.origin, path: `${url.pathname}${url.search}` };
    }
    return this.#target;
  }

  async #readResponse(res: Dispatcher.ResponseData, opts: PostOptions): Promise<PostResult> {
    const status = res.statusCode;
    if (status >= 200 && status <= 299 && !opts.wantReply) {
      await res.body.dump();
      return { result: { kind: 'response', status }, aborted: false };
    }
    const headers = headerRecord(res.headers);
    if (status >= 200 && status <= 299) {
      const { bytes, complete } = await readUpTo(res.body, MAX_REPLY_BYTES);
      return {
        result: { kind: 'response', status },
        ...(complete ? { reply: { headers, body: bytes } } : {}),
        aborted: false,
      };
    }
    const { bytes } = await readUpTo(res.body, MAX_ERROR_DATA * 4);
    return {
      result: {
        kind: 'response',
        status,
        retryAfter: headers['retry-after'],
        bodySnippet: decoder.decode(bytes).slice(0, MAX_ERROR_DATA),
      },
      aborted: false,
    };
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  async destroy(): Promise<void> {
    await this.#agent.destroy();
  }
}
