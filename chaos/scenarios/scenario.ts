import type { ChaosContext } from '../lib/context.js';

/** One chaos scenario: a file in chaos/scenarios/, listed in chaos/scenarios/index.ts. */
export interface Scenario {
  name: string;
  /** One line for the usage text. */
  about: string;
  /** Runs in CI (test/chaos/quick.test.ts), within 60 s at the scaled-down options there. */
  quick: boolean;
  /** Drives the system and records checks and figures on `ctx`; a throw is a failure too. */
  run(ctx: ChaosContext): Promise<void>;
}
