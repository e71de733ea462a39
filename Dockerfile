# syntax=docker/dockerfile:1
# One image for every eventwire component: `eventwire controller|dispatcher|ingress`.
# Multi-stage: the build stage compiles TypeScript to dist/; the runtime stage holds only
# dist/ and the production dependencies, runs as a non-root user and needs nothing writable
# on the root filesystem (the chart mounts an emptyDir at /tmp).
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
# extra npm flags, e.g. --offline when building from a pre-filled cache without network
ARG NPM_FLAGS=""
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency would fetch a second Node; the base has Node 24
RUN npm ci --no-audit --no-fund --ignore-scripts ${NPM_FLAGS}
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# src/cli/dev.ts (eventwire dev) imports the shop example
COPY examples ./examples
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json \
 && npm prune --omit=dev --no-audit --no-fund --ignore-scripts ${NPM_FLAGS}

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# 65532: the conventional "nonroot" uid; no home or shell needed
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["node", "--enable-source-maps", "/app/dist/src/cli/main.js"]
CMD ["--help"]
