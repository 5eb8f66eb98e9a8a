/**
 * Options of the metrics/health HTTP endpoint. The YAML loader and the CLI take
 * their defaults from here (`metrics.*` keys).
 */

export interface MetricsOptions {
  /** Serve /metrics and the health endpoints at all. */
  enabled: boolean;
  /**
   * Interface to bind. Loopback by default: the endpoint has no
   * authentication, and the security report names the committee's peers.
   * Operators who scrape from another host say so explicitly.
   */
  host: string;
  /**
   * TCP port; 0 picks a free one (tests). 9464 (the usual exporter port), not
   * 9090: a Prometheus server on the same host listens there.
   */
  port: number;
  /**
   * Milliseconds a health or status provider may take before the endpoint
   * answers 503 on its own: a probe that hangs is worse for an orchestrator
   * than one that says "unhealthy".
   */
  healthTimeoutMs: number;
}

export const defaultMetricsOptions: Readonly<MetricsOptions> = Object.freeze({
  enabled: true,
  host: '127.0.0.1',
  port: 9464,
  healthTimeoutMs: 5_000,
});
