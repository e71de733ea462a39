// The CloudEvents core: event model, validation, NATS and HTTP bindings, JSON format.
export * from './errors.ts';
export * from './event.ts';
export * from './headers.ts';
export * from './binary.ts';
export * from './structured.ts';
export * from './json-depth.ts';
export * from './nats.ts';
export * from './http.ts';
export * from './filter-dialect.ts';
