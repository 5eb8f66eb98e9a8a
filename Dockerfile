# qmpcd in a container: one party per container.
#   docker build -t qmpc .
#   docker run -v ./party-0:/etc/qmpc -v qmpc-0:/var/lib/qmpc qmpc
# The configuration (/etc/qmpc/qmpcd.yaml) names the committee; state lives in /var/lib/qmpc.
FROM node:24-bookworm-slim
WORKDIR /usr/lib/qmpc
COPY package.json package-lock.json .npmrc ./
# Runtime dependencies only (the pinned Node package comes along; the image runs its own Node 24).
RUN npm ci --omit=dev && npm cache clean --force
COPY daemon ./daemon
COPY protocols ./protocols
COPY config ./config
RUN useradd --system --home /var/lib/qmpc --shell /usr/sbin/nologin qmpc \
 && install -d -o qmpc -g qmpc -m 0700 /var/lib/qmpc \
 && install -d -o qmpc -g qmpc -m 0750 /run/qmpc /etc/qmpc
USER qmpc
ENV STATE_DIRECTORY=/var/lib/qmpc RUNTIME_DIRECTORY=/run/qmpc
EXPOSE 7400 9464
ENTRYPOINT ["node", "--max-semi-space-size=2", "/usr/lib/qmpc/daemon/cli.ts"]
CMD ["daemon", "--config", "/etc/qmpc/qmpcd.yaml"]
