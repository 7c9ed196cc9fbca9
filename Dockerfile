# syntax=docker/dockerfile:1
# wa-invite-rotator: build with the dev toolchain, run with production dependencies only.
# Node 26 is the Active LTS (since 2026-10-28; 24 is in maintenance). The major is pinned so a
# rebuild never jumps a major; bookworm-slim keeps the Debian release the image was built on.

FROM node:26-bookworm-slim AS build
WORKDIR /app
# Manifests first, so the dependency layer is cached until they change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:26-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# The app writes nothing to disk: its files stay owned by root, so the `node` user can read but
# not alter them. package.json stays too: the version in the User-Agent is read from it.
COPY --from=build /app/dist ./dist
COPY config ./config
# The official node images ship the unprivileged `node` user (uid 1000).
USER node
EXPOSE 8080
# No curl in slim images: probe /healthz with node itself. HEALTH_PORT=0 turns the server off,
# and then there is nothing to probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const p=process.env.HEALTH_PORT||8080;if(p==='0')process.exit(0);fetch('http://127.0.0.1:'+p+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, no npm and no shell in between: SIGTERM/SIGINT reach node, which drains and exits.
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["start"]
