/**
 * `qmpc daemon`: the process around a PartyNode. Owns the logger, signals,
 * sd_notify and the exit code (DESIGN convention 1).
 *
 * SIGTERM/SIGINT: graceful stop (STOPPING=1, jobs end with a recorded error,
 * store closed last); a second signal forces exit. SIGHUP: re-read the
 * configuration and apply what can change live (RELOADING=1 … READY=1).
 */
import { loadConfig } from './config/load.ts';
import { EXIT, exitCodeOf } from './errors.ts';
import { createLogger } from './logger.ts';
import { PartyNode } from './node.ts';
import { createNotifier, startWatchdog } from './systemd/notify.ts';

export interface RunDaemonOptions {
  configFile: string;
  sets: string[];
  logLevel?: string;
}

export async function runDaemon(o: RunDaemonOptions): Promise<number> {
  const load = () => loadConfig({ file: o.configFile, sets: o.sets, overrides: o.logLevel ? { logging: { level: o.logLevel } } : undefined });
  let config;
  try {
    config = load();
  } catch (e) {
    process.stderr.write(`qmpc daemon: ${(e as Error).message}\n`);
    return exitCodeOf(e);
  }
  const logger = createLogger({ level: config.logging.level, format: config.logging.format });
  const notifier = createNotifier({ logger: logger.child({ module: 'systemd' }) });
  await notifier.status('starting');
  let node: PartyNode;
  try {
    node = await PartyNode.init(config, { logger });
  } catch (e) {
    const err = e as Error & { code?: string };
    logger.fatal({ code: err.code, err: err.message }, 'cannot start');
    process.stderr.write(`qmpc daemon: ${err.message}\n`);
    return exitCodeOf(e);
  }
  const statusLine = () => {
    const d = node.describe();
    const peers = d.peersConnected.length ? `peers ${d.peersConnected.join(', ')} connected` : 'waiting for peers';
    return `party ${d.party}: ${peers}; ${d.jobsActive} job(s) running`;
  };
  const pushStatus = () => void notifier.status(statusLine());
  node.network.addEventListener('party:connect', pushStatus);
  node.network.addEventListener('party:disconnect', pushStatus);
  await notifier.ready(statusLine());
  const watchdog = startWatchdog({ notifier, logger, healthy: () => node.status === 'running' });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(EXIT.failure);
      }
      stopping = true;
      logger.info({ signal }, 'stopping');
      watchdog.stop();
      await notifier.stopping(`party ${node.party}: stopping`);
      await node.close();
      logger.info('stopped');
      process.off('SIGHUP', onHup);
      resolve(EXIT.ok);
    };
    const reload = async () => {
      await notifier.reloading(`party ${node.party}: reloading`);
      try {
        const result = node.reload(load());
        logger.info(result, 'configuration reloaded');
        return result;
      } catch (e) {
        logger.error({ err: (e as Error).message }, 'reload failed; keeping the running configuration');
        throw e;
      } finally {
        await notifier.ready(statusLine());
      }
    };
    // ExecReload= calls this through the admin socket, so `systemctl reload` returns once the change is applied
    // (Type=notify-reload needs systemd 253; SIGHUP alone would return before the daemon has read the file).
    node.admin.register('reload', { help: 're-read the configuration file and apply what can change live', handler: () => reload() });
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    const onHup = () => void reload().catch(() => {});
    process.on('SIGHUP', onHup);
  });
}
