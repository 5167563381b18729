import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKeyDir } from "./key-dir.js";
import { startPlugin, type RunningPlugin } from "./csi-plugin.js";
import { scrubTree } from "./scrub.js";

export interface HarnessOptions {
  /** Failpoints armed in every process this harness starts; each fires once (CLOAK_FAILPOINTS_FIRED). */
  readonly failpoints?: readonly string[];
  /** Extra plugin flags. */
  readonly args?: readonly string[];
  /** Where the volumes live, when not below the harness's scratch directory. */
  readonly volumesDir?: string;
}

/**
 * One plugin over a scratch directory, restarted the way a crash test needs: every process
 * gets the same failpoints, and a failpoint that fired once stays fired, so "kill at X, start
 * again, retry" is `expect(call).rejects…UNAVAILABLE; await restart(); await call`.
 */
export class PluginHarness {
  root = "";
  keyDir = "";
  plugin!: RunningPlugin;

  constructor(
    private readonly prefix: string,
    private options: HarnessOptions = {},
    /** Flags every process gets, before `options.args`. */
    private readonly fixedArgs: readonly string[] = [],
  ) {}

  async setUp(): Promise<void> {
    this.root = await mkdtemp(join(tmpdir(), this.prefix));
    this.keyDir = await createKeyDir(join(this.root, "keys"));
    await mkdir(join(this.root, "fired"));
    this.plugin = await this.start(this.keyDir);
  }

  async tearDown(): Promise<void> {
    await this.plugin?.stop("SIGKILL");
    if (this.root) {
      await scrubTree(this.root);
      await rm(this.root, { recursive: true, force: true });
    }
  }

  /**
   * Kills the plugin (SIGKILL, as a node crash) and starts it again. `options` replace the
   * harness's from now on; `keyDir` is for this process only (undefined: no file key source,
   * the flags in `args` name another).
   */
  async restart(options?: HarnessOptions & { keyDir?: string | undefined }): Promise<void> {
    if (options) {
      const { keyDir: _keyDir, ...rest } = options;
      this.options = { ...this.options, ...rest };
    }
    await this.plugin?.stop("SIGKILL");
    this.plugin = await this.start(options && "keyDir" in options ? options.keyDir : this.keyDir);
  }

  /** `keyDir` undefined: no --key-dir (a default parameter would turn undefined into the harness's). */
  private start(keyDir: string | undefined): Promise<RunningPlugin> {
    return startPlugin({
      dir: join(this.root, "plugin"),
      keyDir,
      ...(this.options.volumesDir ? { volumesDir: this.options.volumesDir } : {}),
      args: [...this.fixedArgs, ...(this.options.args ?? [])],
      env: { CLOAK_FAILPOINTS: (this.options.failpoints ?? []).join(","), CLOAK_FAILPOINTS_FIRED: join(this.root, "fired") },
    });
  }

  get controller() {
    return this.plugin.client.controller;
  }

  get node() {
    return this.plugin.client.node;
  }

  /** Whether a log line of the running process has `msg`. */
  logged(msg: string | RegExp): boolean {
    return this.plugin.logs.some((l) => (typeof msg === "string" ? l["msg"] === msg : msg.test(String(l["msg"]))));
  }
}
