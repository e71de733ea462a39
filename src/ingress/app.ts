// The ingress HTTP application: POST /<namespace>/<stream> with one CloudEvent (binary or
// structured mode) or a batch. Order of checks: path, authentication (401), authorization
// (403), stream (404 / 503), producer namespace (403), body size (413), decoding and
// validation of every event (400 / 413 / 415, nothing published), NATS connection (503),
// then every event is published concurrently and 202 is answered once all PubAcks arrived.
import type { JetStreamClient } from '@nats-io/jetstream';
import express, { type NextFunction, type Request, type Response } from 'express';
import { fromHttpRequest, type CloudEvent } from '../cloudevents/index.ts';
import type { Logger } from '../observability/logger.ts';
import { AuthUnavailableError, type Authorizer, type Caller } from './auth.ts';
import type { IngressMetrics } from './metrics.ts';
import { readBody } from './body.ts';
import { HttpProblem, PROBLEM_CONTENT_TYPE } from './problem.ts';
import { encodeForNats, PublishError, publishEncoded, type EncodedEvent } from './publisher.ts';
import { allowsPublisher, type StreamDirectory, type StreamTarget } from './streams.ts';
import { eventChecker, smallestLimit, tooLargeForStream } from './validate.ts';

export interface IngressDeps {
  readonly streams: StreamDirectory;
  readonly js: JetStreamClient;
  /** false while the NATS connection is down: requests fail fast with 503 */
  readonly connected: () => boolean;
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

type AsyncHandler = (req: Request, res: Response) => Promise<void>;

/** Express does not await handlers: route rejections to the error handler. */
function wrap(fn: AsyncHandler) {
  return (req: Request, res: Response, next: NextFunction): void => {
    fn(req, res).catch(next);
  };
}

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
  req: Request,
  where: { namespace: string; stream: string },
): Promise<Caller> {
  const token = bearerToken(req.headers.authorization);
  const fix = 'send Authorization: Bearer <a ServiceAccount token>';
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
async function admit(deps: IngressDeps, req: Request): Promise<StreamTarget> {
  const namespace = String(req.params.namespace);
  const stream = String(req.params.stream);
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
): EncodedEvent[] {
  const max = smallestLimit(target.maxMsgSize, deps.serverMaxPayload());
  return decoded.events.map((event, index) => {
    const encoded = encodeForNats(target.subjectPrefix, event);
    if (max !== undefined && encoded.size > max) {
      const error = tooLargeForStream(event, encoded.size, max);
      throw HttpProblem.fromInvalidEvent(decoded.batch ? error.atIndex(index) : error);
    }
    return encoded;
  });
}

const ACCEPTED = { 'content-type': 'application/json' };

function publishHandler(deps: IngressDeps): AsyncHandler {
  return async (req, res) => {
    const target = await admit(deps, req);
    const body = await readBody(req, deps.maxBodyBytes);
    if (body instanceof HttpProblem) throw body;
    const checkEvent = eventChecker(target.subjectPrefix);
    const decoded = fromHttpRequest({ headers: req.headers, body }, { checkEvent });
    if (!decoded.ok) throw HttpProblem.fromInvalidEvent(decoded.error);
    const encoded = encodeAll(deps, target, decoded);
    if (!deps.connected()) throw unavailable(deps, 'not connected to NATS');
    let result;
    try {
      result = await publishEncoded(deps.js, target.streamName, encoded, deps.publishTimeoutMs);
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
    if (problem.status === 401) res.setHeader('www-authenticate', 'Bearer');
    res.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem.body()));
  };
}

function observe(metrics: IngressMetrics) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const code = String(res.statusCode);
      metrics.requests.inc({ code });
      metrics.duration.observe({ code }, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  };
}

export function createIngressApp(deps: IngressDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(observe(deps.metrics));
  app.post('/:namespace/:stream', wrap(publishHandler(deps)));
  app.all('/:namespace/:stream', (_req, res, next) => {
    res.setHeader('allow', 'POST');
    next(
      new HttpProblem(405, 'method-not-allowed', 'only POST is supported', {
        fix: 'POST CloudEvents to /<namespace>/<stream>',
      }),
    );
  });
  app.use((req, _res, next) => {
    next(
      new HttpProblem(404, 'not-found', `no route for ${req.method} ${req.path}`, {
        field: 'path',
        fix: 'POST CloudEvents to /<namespace>/<stream>',
      }),
    );
  });
  app.use(errorHandler(deps));
  return app;
}
