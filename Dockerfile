# MQTT gateway node image. Build context: the repository root (see .dockerignore).
#   docker build -t mqtt-gateway .
#   docker run -e MQGW_NODE_ID=gw-1 -e MQGW_REDIS_URL=redis://redis:6379 mqtt-gateway
# docker-compose.yml builds it for the nodes gw-1 and gw-2.

# --- build: dependencies (npm ci from the lockfile), TypeScript -> dist/, dev deps dropped
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci runs patch-package (postinstall): the outbound flow-control patch of Aedes.
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY types ./types
COPY app ./app
COPY src ./src
COPY plugins ./plugins
# tsconfig.json also includes test/ and bench/, which are not in the build context.
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: production dependencies and compiled code only, as the unprivileged user
FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
# Files stay owned by root and read-only for the process; the gateway writes nothing to disk.
USER node
# MQTT/TCP, MQTT/WebSocket, admin (/healthz /readyz /metrics)
EXPOSE 1883 8083 9100
STOPSIGNAL SIGTERM
# The V8 flag: scripts/start.sh says why.
CMD ["node", "--initial-old-space-size=64", "dist/app/cli.js", "--config", "/app/config/cluster.yaml"]
