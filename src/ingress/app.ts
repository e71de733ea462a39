// The ingress HTTP application: POST /<namespace>/<stream> with one CloudEvent (binary or
// structured mode) or a batch. Order of checks: path, authentication (401), authorization
// (403), stream (404 / 503), producer namespace (403), body size (413), decoding and
// validation of every event (400 / 413 / 415, nothing published), NATS connection (503 unless
// a fail-over to another NATS server is under way), then every event is published
// concurrently and 202 is answered once all PubAcks arrived.
// An answer given before the whole body was read closes the connection: the rest of the
// body is never read.
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { JetStreamClient } from '@nats-io/jetstream';
import express, { type NextFunction, type Request, type Response } from 'express';
import { fromHttpRequest, type CloudEvent, type InvalidEventError } from '../cloudevents/index.ts';
import type { Logger } from '../observability/logger.ts';
import { AuthUnavailableError, type Authorizer, type Caller } from './auth.ts';
import type { IngressMetrics } from './metrics.ts';
import { readBody } from './body.ts';
import { HttpProblem, PROBLEM_CONTENT_TYPE } from './problem.ts';
import {
  encodeForNats,
  PublishError,
  publishEncoded,
  type ConnectionWatch,
  type EncodedEvent,
} from './publisher.ts';
import { allowsPublisher, type StreamDirectory, type StreamTarget } from './streams.ts';
import {
  eventChecker,
  MAX_HEADER_BYTES,
  MAX_JSON_DEPTH,
  smallestLimit,
  SubjectCache,
  tooLargeForStream,
  tooLargeHeaders,
} from './validate.ts';

export interface IngressDeps {
  readonly streams: StreamDirectory;
  readonly js: JetStreamClient;
  /**
   * The NATS connection's state: a request waits for a reconnection that is under way (a
   * fail-over to another server of the cluster) and publishes again what was in flight when
   * the connection was lost; it fails with 503 at once while NATS has been down for longer.
   */
  readonly connection: Pick<ConnectionWatch, 'connected' | 'whenConnected' | 'onReconnect'>;
  /** the NATS server's max payload, when known */
  readonly serverMaxPayload: () => number | undefined;
  /** undefined: no authentication (anyone may publish to streams allowing "*") */
  readonly authorizer?: Authorizer | undefined;
  readonly maxBodyBytes: number;
  readonly publishTimeoutMs: number;
  readonly retryAfterSeconds: number;
  readonly metrics: IngressMetrics;
  readonly log: Logger;
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

type PublishHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  namespace: string,
  stream: string,
) => Promise<void>;

function unavailable(deps: IngressDeps, detail: string, cause?: unknown): HttpProblem {
  return new HttpProblem(503, 'unavailable', detail, {
    retryAfter: deps.retryAfterSeconds,
    fix: 'retry after the Retry-After delay; retries are de-duplicated',
    cause,
  });
}

function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}

async function authorize(
  deps: IngressDeps,
  authorizer: Authorizer,
  req: IncomingMessage,
  where: { namespace: string; stream: string },
): Promise<Caller> {
  const token = bearerToken(req.headers.authorization);
  const audience = authorizer.audiences?.[0];
  const fix =
    audience === undefined
      ? 'send Authorization: Bearer <a ServiceAccount token>'
      : `send Authorization: Bearer <a ServiceAccount token for audience ${audience}> (kubectl create token <serviceaccount> --audience ${audience}, or a projected token with that audience)`;
  if (token === undefined) {
    throw new HttpProblem(401, 'unauthenticated', 'no bearer token', {
      field: 'authorization',
      fix,
    });
  }
  try {
    const caller = await authorizer.authenticate(token);
    if (caller === undefined) {
      throw new HttpProblem(401, 'unauthenticated', 'the bearer token is not valid', {
        field: 'authorization',
        fix,
      });
    }
    const decision = await authorizer.mayPublish(caller, where.namespace, where.stream);
    if (!decision.allowed) {
      throw new HttpProblem(
        403,
        'forbidden',
        `${caller.username} may not publish to ${where.namespace}/${where.stream}`,
        {
          field: 'authorization',
          fix: `grant create on eventstreams/publish (group eventwire.io) in namespace ${where.namespace}`,
        },
      );
    }
    return caller;
  } catch (err) {
    if (err instanceof AuthUnavailableError) {
      throw unavailable(deps, 'cannot check the caller with the Kubernetes API', err);
    }
    throw err;
  }
}

function resolveTarget(deps: IngressDeps, namespace: string, stream: string): StreamTarget {
  const lookup =
    NAMESPACE.test(namespace) && NAME.test(stream)
      ? deps.streams.get(namespace, stream)
      : ({ kind: 'missing' } as const);
  if (lookup.kind === 'missing') {
    throw new HttpProblem(404, 'unknown-stream', `there is no EventStream ${namespace}/${stream}`, {
      field: 'stream',
      fix: 'POST to /<namespace>/<name> of an existing EventStream',
    });
  }
  if (lookup.kind === 'not-ready') {
    throw unavailable(deps, `EventStream ${namespace}/${stream} is not ready: ${lookup.reason}`);
  }
  return lookup.target;
}

/** Everything decided before the body is read. */
async function admit(
  deps: IngressDeps,
  req: IncomingMessage,
  namespace: string,
  stream: string,
): Promise<StreamTarget> {
  const caller =
    deps.authorizer === undefined
      ? undefined
      : await authorize(deps, deps.authorizer, req, { namespace, stream });
  const target = resolveTarget(deps, namespace, stream);
  if (!allowsPublisher(target, caller?.namespace)) {
    throw new HttpProblem(
      403,
      'namespace-not-allowed',
      caller?.namespace === undefined
        ? `EventStream ${namespace}/${stream} only accepts producers from some namespaces, and the caller's namespace is unknown`
        : `EventStream ${namespace}/${stream} does not accept producers from namespace ${caller.namespace}`,
      {
        field: 'namespace',
        fix: "add the producer's namespace to the stream's spec.allowedNamespaces (and authenticate with a ServiceAccount token)",
      },
    );
  }
  return target;
}

/** Encodes every event, or fails the whole request when one is too large for the stream. */
function encodeAll(
  deps: IngressDeps,
  target: StreamTarget,
  decoded: { events: CloudEvent[]; batch: boolean },
  subjects: SubjectCache,
): EncodedEvent[] {
  const max = smallestLimit(target.maxMsgSize, deps.serverMaxPayload());
  return decoded.events.map((event, index) => {
    const prefix = target.subjectPrefix;
    const encoded = encodeForNats(target, event, subjects.subjectFor(prefix, event.type));
    let error: InvalidEventError | undefined;
    if (encoded.headerSize > MAX_HEADER_BYTES) error = tooLargeHeaders(event, encoded.headerSize);
    else if (max !== undefined && encoded.size > max)
      error = tooLargeForStream(event, encoded.size, max);
    if (error !== undefined) {
      throw HttpProblem.fromInvalidEvent(decoded.batch ? error.atIndex(index) : error);
    }
    return encoded;
  });
}

const ACCEPTED = { 'content-type': 'application/json' };

let turn: Promise<void> | undefined;

/**
 * Resolves in this event-loop turn's check phase, once for every caller of the turn. nats.js
 * writes what was published since its last flush in one socket write per microtask
 * checkpoint; requests read from different sockets run in separate checkpoints, so without
 * this every event cost a write (a third of the ingress's CPU, and as many reads in
 * nats-server). Waiting here publishes all events of the requests read in one poll phase
 * together, in one write.
 */
function nextTurn(): Promise<void> {
  turn ??= new Promise((resolve) => {
    setImmediate(() => {
      turn = undefined;
      resolve();
    });
  });
  return turn;
}

function publishHandler(deps: IngressDeps): PublishHandler {
  const subjects = new SubjectCache();
  return async (req, res, namespace, stream) => {
    const target = await admit(deps, req, namespace, stream);
    const body = await readBody(req, deps.maxBodyBytes);
    if (body instanceof HttpProblem) throw body;
    const checkEvent = eventChecker(target.subjectPrefix, subjects);
    const decoded = fromHttpRequest(
      { headers: req.headers, body },
      { checkEvent, maxJsonDepth: MAX_JSON_DEPTH },
    );
    if (!decoded.ok) throw HttpProblem.fromInvalidEvent(decoded.error);
    const encoded = encodeAll(deps, target, decoded, subjects);
    await nextTurn();
    const deadline = Date.now() + deps.publishTimeoutMs;
    if (!deps.connection.connected() && !(await deps.connection.whenConnected(deadline))) {
      throw unavailable(deps, 'not connected to NATS');
    }
    let result;
    try {
      result = await publishEncoded(
        deps.js,
        target.streamName,
        encoded,
        deadline - Date.now(),
        deps.connection.onReconnect,
      );
    } catch (err) {
      throw toProblem(deps, err);
    }
    const events = result.acks.length;
    deps.metrics.events.inc({ outcome: 'stored' }, events - result.duplicates);
    if (result.duplicates > 0) deps.metrics.events.inc({ outcome: 'duplicate' }, result.duplicates);
    res.writeHead(202, ACCEPTED).end(`{"events":${events},"duplicates":${result.duplicates}}`);
  };
}

function toProblem(deps: IngressDeps, err: unknown): HttpProblem {
  if (!(err instanceof PublishError)) return unavailable(deps, 'publishing failed', err);
  if (err.kind === 'too-large') {
    return new HttpProblem(413, 'too-large', err.message, {
      field: 'data',
      fix: 'send smaller events',
      cause: err,
    });
  }
  return unavailable(deps, err.message, err);
}

function errorHandler(deps: IngressDeps) {
  return (err: unknown, req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) {
      next(err); // Express closes the connection
      return;
    }
    let problem = err instanceof HttpProblem ? err : undefined;
    if (problem === undefined) {
      deps.log.error({ err, path: req.path }, 'ingress request failed');
      problem = new HttpProblem(500, 'internal', 'internal error', { cause: err });
    } else if (problem.status >= 500) {
      deps.log.warn({ err: problem, path: req.path }, 'ingress request not accepted');
    }
    if (problem.retryAfter !== undefined) res.setHeader('retry-after', String(problem.retryAfter));
    // the body was not read to its end (413, or an answer before reading it): close the
    // connection once the answer is written rather than read whatever the client still sends
    if (!req.complete) res.setHeader('connection', 'close');
    if (problem.status === 401) res.setHeader('www-authenticate', 'Bearer');
    res.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem.body()));
  };
}

/** Counts the request and its duration by status code once the answer is sent. */
function observer(metrics: IngressMetrics): (res: ServerResponse) => void {
  // the labelled children by status code: labels are hashed once per code, not per request
  const byCode = new Map<
    number,
    { requests: { inc(): void }; duration: { observe(v: number): void } }
  >();
  const childrenOf = (status: number) => {
    let children = byCode.get(status);
    if (children === undefined) {
      const code = String(status);
      children = {
        requests: metrics.requests.labels({ code }),
        duration: metrics.duration.labels({ code }),
      };
      byCode.set(status, children);
    }
    return children;
  };
  return (res) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const children = childrenOf(res.statusCode);
      children.requests.inc();
      children.duration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    });
  };
}

/**
 * The only path events are published on: two plain segments, without percent-encoding or a
 * trailing slash (names of namespaces and EventStreams never need encoding; an encoded alias
 * would slip past path-based rules of proxies in front of the ingress). A query string is
 * ignored.
 */
const PUBLISH_PATH = /^\/([^/?#%]+)\/([^/?#%]+)$/;

function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * The request listener of the producers' port. `POST /<namespace>/<stream>` with a plain
 * path skips Express (its routing and request decoration were a tenth of the ingress's CPU
 * per event); a failure there is handed to the Express app, whose error handler answers it,
 * so every answer other than 202 is produced by the same code either way.
 */
export function createIngressApp(deps: IngressDeps): RequestListener {
  const observe = observer(deps.metrics);
  const publish = publishHandler(deps);
  /** failures of the fast path, for the Express app to answer */
  const failures = new WeakMap<IncomingMessage, { err: unknown }>();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req: Request, res: Response, next: NextFunction) => {
    const failure = failures.get(req);
    if (failure !== undefined) {
      next(failure.err);
      return;
    }
    observe(res);
    next();
  });
  app.use((req, res, next) => {
    // POST on the publish path never gets here (it is the fast path)
    if (req.method !== 'POST' && PUBLISH_PATH.test(req.path)) {
      res.setHeader('allow', 'POST');
      next(
        new HttpProblem(405, 'method-not-allowed', 'only POST is supported', {
          fix: 'POST CloudEvents to /<namespace>/<stream>',
        }),
      );
      return;
    }
    next(
      new HttpProblem(404, 'not-found', `no route for ${req.method} ${req.path}`, {
        field: 'path',
        fix: 'POST CloudEvents to /<namespace>/<stream>, a plain path without a trailing slash or percent-encoding',
      }),
    );
  });
  app.use(errorHandler(deps));
  return (req, res) => {
    const m = req.method === 'POST' ? PUBLISH_PATH.exec(pathOf(req.url ?? '')) : null;
    const namespace = m?.[1];
    const stream = m?.[2];
    if (namespace === undefined || stream === undefined) {
      app(req, res);
      return;
    }
    observe(res);
    publish(req, res, namespace, stream).catch((err: unknown) => {
      failures.set(req, { err });
      app(req, res);
    });
  };
}
